//! `run` steps of another platform run through QEMU user emulation, registered with the
//! fix-binary flag (`F`): the kernel holds the emulator open from the moment it is registered,
//! so it runs the foreign programs inside any sandbox, whatever its root holds.
//!
//! Where the registration comes from, in order:
//! 1. the host's `binfmt_misc` (Debian's `qemu-user-static` with `binfmt-support` registers
//!    each emulator so) — nothing to do;
//! 2. else, on Linux 6.7 or later: a `binfmt_misc` instance of a user namespace of the
//!    sandbox's own (the rootless sandbox's; as root, one made for the step's process with the
//!    identity map) gets the emulator, from the description `binfmt-support` installs
//!    (`/usr/share/binfmts/qemu-ARCH`); the host's registrations are neither needed nor changed.
//!
//! Checked for every foreign platform before anything is built.

use std::path::{Path, PathBuf};

use crate::oci::image::Platform;

/// Where the kernel lists `binfmt_misc` registrations (`STACK_BINFMT_DIR` overrides it, for
/// tests and for hosts that mount it elsewhere).
fn binfmt_dir() -> PathBuf {
    std::env::var_os("STACK_BINFMT_DIR")
        .map_or_else(|| PathBuf::from("/proc/sys/fs/binfmt_misc"), PathBuf::from)
}

/// Why a platform's programs cannot run here.
#[derive(Debug, thiserror::Error)]
#[error("`run` steps for {platform} need an emulator: {problem}")]
pub(crate) struct EmulationError {
    pub platform: String,
    pub problem: String,
}

/// QEMU's name for an OCI architecture.
fn qemu_arch(p: &Platform) -> Option<&'static str> {
    Some(match p.architecture.as_str() {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "arm" => "arm",
        "386" => "i386",
        "ppc64le" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "mips64le" => "mips64el",
        _ => return None,
    })
}

/// How the programs of `platform` run here: `None` natively or through the host's
/// registration, `Some(line)` through a registration the sandbox makes in a user namespace of
/// its own (`line` is written to that namespace's `binfmt_misc/register`).
pub(crate) fn plan(platform: &Platform) -> Result<Option<String>, EmulationError> {
    // Without a host registration, a sandbox registers the emulator in a user namespace of its
    // own: the rootless sandbox's, or (as root) one made for the step's process.
    if check(platform).is_ok() {
        return Ok(None);
    }
    let fail = |problem: String| EmulationError { platform: platform.to_string(), problem };
    let arch = qemu_arch(platform).unwrap_or_default();
    let description = descriptions_dir().join(format!("qemu-{arch}"));
    let text = fs_err::read_to_string(&description).map_err(|_| {
        fail(format!(
            "no emulator is registered on the host and `{}` is missing; install Debian's \
             `qemu-user-static` (stack registers it for its own sandboxes on Linux 6.7 or \
             later)",
            description.display()
        ))
    })?;
    registration(&text, arch)
        .map(Some)
        .map_err(|p| fail(format!("`{}`: {p}", description.display())))
}

/// Where `binfmt-support` keeps its descriptions (`STACK_BINFMTS_DIR` overrides it).
fn descriptions_dir() -> PathBuf {
    std::env::var_os("STACK_BINFMTS_DIR")
        .map_or_else(|| PathBuf::from("/usr/share/binfmts"), PathBuf::from)
}

/// The `register` line for a `binfmt-support` description: magic and mask as written there
/// (`\x..` escapes, which `binfmt_misc` reads), the fix-binary flag, the interpreter checked.
fn registration(description: &str, arch: &str) -> Result<String, String> {
    let field = |name: &str| {
        description.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')).map(str::trim)
    };
    let (Some(interpreter), Some(magic)) = (field("interpreter"), field("magic")) else {
        return Err("it names no interpreter or magic".into());
    };
    if !Path::new(interpreter).exists() {
        return Err(format!("its interpreter `{interpreter}` is missing"));
    }
    let bad = |v: &str| v.contains([':', '\n']);
    let (offset, mask) = (field("offset").unwrap_or("0"), field("mask").unwrap_or(""));
    if [interpreter, magic, offset, mask].into_iter().any(bad) {
        return Err("it holds a `:`, which a registration cannot".into());
    }
    // `preserve` passes the program's own argv[0] (busybox picks its applet by it); the
    // emulators `binfmt-support` points at expect it when the description says so.
    let mut flags = String::from("F");
    if field("preserve") == Some("yes") {
        flags.insert(0, 'P');
    }
    if field("credentials") == Some("yes") {
        flags.push('C');
    }
    Ok(format!(":stack-qemu-{arch}:M:{offset}:{magic}:{mask}:{interpreter}:{flags}"))
}

/// Checks that the host runs programs of `platform` (always true of its own).
pub(crate) fn check(platform: &Platform) -> Result<(), EmulationError> {
    if platform.is_host() {
        return Ok(());
    }
    let fail = |problem: String| EmulationError { platform: platform.to_string(), problem };
    let Some(arch) = qemu_arch(platform) else {
        return Err(fail(format!("QEMU has no user emulator for `{}`", platform.architecture)));
    };
    let dir = binfmt_dir();
    let entry = dir.join(format!("qemu-{arch}"));
    let install = format!(
        "install Debian's `qemu-user-static` and `binfmt-support` and enable it \
         (`update-binfmts --enable qemu-{arch}`, with binfmt_misc mounted: `mount -t binfmt_misc \
         binfmt_misc /proc/sys/fs/binfmt_misc`); a rootless stack needs only \
         `qemu-user-static` on Linux 6.7 or later"
    );
    let Ok(text) = fs_err::read_to_string(&entry) else {
        return Err(fail(format!("`{}` is not registered; {install}", entry.display())));
    };
    registration_ok(&text, &entry).map_err(|p| fail(format!("{p}; {install}")))
}

/// Whether a registration runs programs in a sandbox: enabled, with the fix-binary flag, and
/// an interpreter the kernel could open.
fn registration_ok(text: &str, entry: &Path) -> Result<(), String> {
    let field = |name: &str| text.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
    if text.lines().next() != Some("enabled") {
        return Err(format!("`{}` is disabled", entry.display()));
    }
    let interpreter = field("interpreter ").unwrap_or_default();
    if !field("flags:").unwrap_or_default().contains('F') {
        return Err(format!(
            "`{}` lacks the fix-binary flag `F`, so its interpreter `{interpreter}` would be \
             looked for inside the step's root",
            entry.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registration_must_be_enabled_and_fix_the_binary() {
        let e = Path::new("/x/qemu-aarch64");
        let ok = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POCF\noffset 0\n";
        assert!(registration_ok(ok, e).is_ok());
        assert!(
            registration_ok(&ok.replace("enabled", "disabled"), e)
                .unwrap_err()
                .contains("disabled")
        );
        assert!(registration_ok(&ok.replace("POCF", "OC"), e).unwrap_err().contains("fix-binary"));
        assert!(check(&Platform::host()).is_ok());
    }

    #[test]
    fn a_description_becomes_a_fix_binary_registration() {
        let d = "package qemu-user-static\ninterpreter /bin/sh\nmagic \\x7f\\x45\noffset 0\nmask \\xff\\xff\nfix_binary yes\n";
        assert_eq!(
            registration(d, "aarch64").unwrap(),
            ":stack-qemu-aarch64:M:0:\\x7f\\x45:\\xff\\xff:/bin/sh:F"
        );
        let preserved = format!("{d}preserve yes\n");
        assert!(registration(&preserved, "aarch64").unwrap().ends_with(":/bin/sh:PF"));
        assert!(registration(&d.replace("/bin/sh", "/nope"), "x").unwrap_err().contains("missing"));
        assert!(registration("magic x\n", "x").is_err());
    }
}
