//! `run` steps of another platform run through QEMU user emulation registered in the host's
//! `binfmt_misc` with the fix-binary flag (`F`, as Debian's `qemu-user-static` with
//! `binfmt-support` registers it): the kernel then holds the emulator open, so it runs the
//! foreign programs inside any sandbox, whatever its root holds. Checked for every foreign
//! platform before anything is built.

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
pub struct EmulationError {
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

/// Checks that programs of `platform` can run on this machine (always true of the host's).
pub fn check(platform: &Platform) -> Result<(), EmulationError> {
    if platform.is_host() {
        return Ok(());
    }
    let fail = |problem: String| EmulationError { platform: platform.to_string(), problem };
    let Some(arch) = qemu_arch(platform) else {
        return Err(fail(format!("QEMU has no user emulator for `{}`", platform.architecture)));
    };
    let dir = binfmt_dir();
    let entry = dir.join(format!("qemu-{arch}"));
    let install = "install Debian's `qemu-user-static` and `binfmt-support` (which register the \
                   emulators), with binfmt_misc mounted (`mount -t binfmt_misc binfmt_misc \
                   /proc/sys/fs/binfmt_misc`)";
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
}
