//! The nodes a stage starts from or reads: the scratch node, a base image loaded once per
//! reference and platform (or the image a named context stands for), and the `ONBUILD`
//! triggers a base's config carries.

use std::sync::Arc;

use miette::SourceSpan;
use petgraph::stable_graph::NodeIndex;

use super::onbuild;
use super::stages::Planner;
use super::{BaseError, NamedContext, Node, Op, Place};
use crate::diag::{Diagnostic, did_you_mean};
use crate::digest::KeyHasher;
use crate::oci::image::{ImageConfig, Platform};

impl Planner<'_> {
    pub(super) fn scratch_node(&mut self) -> NodeIndex {
        if let Some(n) = self.scratch {
            return n;
        }
        let key = KeyHasher::new("scratch").finish();
        let n = self.add_node(
            Node::new(
                Place {
                    stage: String::new(),
                    label: "scratch".into(),
                    file: 0,
                    span: (0, 0).into(),
                },
                None,
                key,
                key,
                Op::Scratch,
            ),
            &[],
        );
        self.scratch = Some(n);
        n
    }

    /// The node that provides an image's layers, loaded once per reference.
    pub(super) fn base_node(
        &mut self,
        reference: &str,
        file: usize,
        span: SourceSpan,
        platform: &Platform,
    ) -> Option<(NodeIndex, ImageConfig)> {
        // A named context stands for what `--build-context` gave: an image, or a folder,
        // which `copy from=`/`bind from=` read (and which is no base).
        match self.request.contexts.get(reference) {
            Some(NamedContext::Image(image)) if !self.stages.contains_key(reference) => {
                return self.base_node(&image.clone(), file, span, platform);
            }
            Some(NamedContext::Dir(dir)) if !self.stages.contains_key(reference) => {
                self.error(
                    file,
                    Diagnostic::error(
                        "context-as-base",
                        format!(
                            "the named context `{reference}` is the folder `{}`, which is no image",
                            dir.display()
                        ),
                        span,
                        "not an image",
                    )
                    .with_help("a folder context is read with `copy from=` or `bind from=`; give an image as `--build-context NAME=docker-image://REF`"),
                );
                return None;
            }
            _ => {}
        }
        let base_key = (platform.to_string(), reference.to_owned());
        if let Some(n) = self.bases.get(&base_key)
            && let Op::Base { image, .. } = &self.graph[*n].op
        {
            let config = image.config.clone();
            return Some((*n, strip(config)));
        }
        // A stage of this build that is not planned failed (stages are planned after those
        // they read): its error is already reported, and it is no image to look for.
        if self.stages.contains_key(reference) {
            return None;
        }
        // A plain word close to a stage name is a typo, not an image to pull from Docker Hub.
        if !reference.contains(['/', ':', '@', '.']) {
            let stage_names: Vec<&str> = self.stages.keys().map(String::as_str).collect();
            if let Some(s) = did_you_mean(reference, stage_names.iter().copied()) {
                self.error(
                    file,
                    Diagnostic::error("unknown-stage", format!("`{reference}` is not a stage of this build"), span, "no such stage")
                        .with_help(format!("did you mean stage `{s}`? (to use an image of that name, write its full reference, e.g. `docker.io/library/{reference}:latest`)")),
                );
                return None;
            }
        }
        match self.resolver.image(reference, file, platform) {
            Ok(image) => {
                let key = KeyHasher::new("base").str(&image.manifest_digest.to_string()).finish();
                let config = strip(image.config.clone());
                let n = self.add_node(
                    Node::new(
                        Place {
                            stage: String::new(),
                            label: format!("from {reference}"),
                            file,
                            span,
                        },
                        None,
                        key,
                        key,
                        Op::Base { reference: reference.to_owned(), image: Arc::clone(&image) },
                    ),
                    &[],
                );
                self.bases.insert(base_key, n);
                Some((n, config))
            }
            Err(problem) => {
                let d = self.unknown_base(reference, span, &problem);
                self.error(file, d);
                None
            }
        }
    }

    /// The error for a base the resolver cannot give, with a hint when it looks like a
    /// misspelt stage.
    fn unknown_base(&self, reference: &str, span: SourceSpan, problem: &BaseError) -> Diagnostic {
        let stage_names: Vec<&str> = self.stages.keys().map(String::as_str).collect();
        // A registry that cannot be reached is no mistake in the build file.
        let code = if problem.unreachable { "base-unreachable" } else { "unknown-base" };
        if let Some(d) =
            super::machine_failure(&format!("cannot get `{reference}`"), problem.cause(), span)
        {
            return d;
        }
        let message = crate::diag::error_chain(problem);
        let mut d = Diagnostic::error(code, message, span, "cannot use this base");
        if let Some(s) = did_you_mean(reference, stage_names.iter().copied()) {
            d = d.with_help(format!("did you mean stage `{s}`?"));
        } else if !reference.contains(':') && !reference.contains('/') {
            d = d.with_help(format!(
                "`{reference}` is not a stage of this build; stages are: {}",
                if stage_names.is_empty() { "(none)".to_owned() } else { stage_names.join(", ") }
            ));
        }
        d
    }

    /// Takes the `ONBUILD` triggers of a stage's base out of its config (they do not pass on
    /// to the stages built from this one) and returns the steps they stand for.
    pub(super) fn triggers(
        &mut self,
        file: usize,
        config: &mut ImageConfig,
        from_span: SourceSpan,
    ) -> Vec<(String, crate::syntax::ast::Step)> {
        let triggers = config.strings("OnBuild");
        config.config_mut().remove("OnBuild");
        if triggers.is_empty() {
            return Vec::new();
        }
        match onbuild::steps(&triggers, from_span) {
            Ok(steps) => steps,
            Err(message) => {
                self.error(
                    file,
                    Diagnostic::error(
                        "invalid-onbuild",
                        format!("this base cannot be used: {message}"),
                        from_span,
                        "this base",
                    ),
                );
                Vec::new()
            }
        }
    }

    /// Resolves a stage name or image reference used by `copy from=` or a mount.
    pub(super) fn source_node(
        &mut self,
        file: usize,
        value: &str,
        span: SourceSpan,
    ) -> Option<NodeIndex> {
        if let Some(end) = self.done.get(value) {
            return Some(end.node);
        }
        let platform = self.target_platform.clone();
        self.base_node(value, file, span, &platform).map(|(n, _)| n)
    }
}

/// Drops the parts of a base config that the executor rebuilds.
fn strip(mut config: ImageConfig) -> ImageConfig {
    config.0.remove("history");
    config.0.remove("rootfs");
    config.0.remove("created");
    config.0.remove("container");
    config.0.remove("container_config");
    config.0.remove("docker_version");
    config
}
