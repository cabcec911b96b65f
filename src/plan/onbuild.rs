//! `ONBUILD` triggers: Dockerfile instructions an image carries in its config (`OnBuild`) and
//! that a stage built `from` it runs first, as `BuildKit` does.
//!
//! A trigger is Dockerfile text, so it goes through the importer, and the steps of the build
//! file it gives are planned like the stage's own. No IO: the importer and the parser are pure.

use miette::SourceSpan;

use crate::dockerfile::{ImportOptions, import, parse};
use crate::syntax::ast::Step;

/// Instructions a trigger may not hold (Docker refuses them after `ONBUILD`).
const FORBIDDEN: &[&str] = &["ONBUILD", "FROM", "MAINTAINER"];

/// Checks that `trigger` is one Dockerfile instruction that may run as a trigger; the error
/// says why not.
pub(super) fn check(trigger: &str) -> Result<(), String> {
    let keyword = trigger.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
    if keyword.is_empty() {
        return Err("an `onbuild` trigger cannot be empty".into());
    }
    if FORBIDDEN.contains(&keyword.as_str()) {
        return Err(format!("`{keyword}` is not allowed as an `onbuild` trigger"));
    }
    let (_, diags) = parse(&dockerfile(std::slice::from_ref(&trigger.to_owned())));
    match diags.iter().find(|d| d.is_error()) {
        Some(d) => Err(format!("`{trigger}` is not a valid Dockerfile instruction: {}", d.message)),
        None => Ok(()),
    }
}

/// The steps the triggers stand for, each with a label for progress output. Every step's span
/// is `at` (the `from` that runs them), since their text is in no file the user wrote.
pub(super) fn steps(triggers: &[String], at: SourceSpan) -> Result<Vec<(String, Step)>, String> {
    let text = dockerfile(triggers);
    let imported = import(&text, &ImportOptions::default()).map_err(|diags| {
        let messages: Vec<String> = diags.iter().map(|d| d.message.clone()).collect();
        format!("its `ONBUILD` triggers do not import: {}", messages.join("; "))
    })?;
    let (ast, diags) = crate::syntax::parse(&imported.kdl);
    let ast = ast.filter(|_| !diags.iter().any(crate::diag::Diagnostic::is_error));
    // The importer always writes a build file that parses; this is a bug if it does not.
    let Some(target) = ast.and_then(|a| a.targets.into_iter().next()) else {
        return Err("its `ONBUILD` triggers gave an invalid build file (a bug in stack)".into());
    };
    let mut out = Vec::new();
    for mut step in target.steps.into_iter().skip(1) {
        let start = step.span.offset();
        let raw = imported.kdl.get(start..start + step.span.len()).unwrap_or("");
        let first = raw.lines().next().unwrap_or("").trim().trim_end_matches('{').trim();
        step.span = at;
        step.name_span = at;
        out.push((format!("onbuild: {first}"), step));
    }
    Ok(out)
}

/// A Dockerfile that runs the triggers on an empty base.
fn dockerfile(triggers: &[String]) -> String {
    let mut text = String::from("FROM scratch\n");
    for t in triggers {
        text.push_str(t);
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_triggers() {
        assert!(check("RUN make").is_ok());
        assert!(check("COPY . /app").is_ok());
        assert!(check("ONBUILD RUN x").unwrap_err().contains("not allowed"));
        assert!(check("from alpine").unwrap_err().contains("not allowed"));
        assert!(check("RUNN x").unwrap_err().contains("not a valid"));
        assert!(check("  ").is_err());
    }

    #[test]
    fn triggers_become_steps() {
        let at = SourceSpan::from((3, 4));
        let triggers = vec!["COPY . /app".to_owned(), "RUN make ${X}".to_owned()];
        let steps = steps(&triggers, at).expect("imports");
        let labels: Vec<&str> = steps.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(labels, ["onbuild: copy \".\" to=\"/app\"", "onbuild: run \"make ${X}\""]);
        assert!(steps.iter().all(|(_, s)| s.span == at));
    }
}
