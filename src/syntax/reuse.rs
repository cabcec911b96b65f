//! Parsing of the nodes that write steps once for many places: `template` (with its `param`s),
//! the `use` step, and a target's `matrix`. No IO; expansion happens in `plan::expand`.

use kdl::{KdlEntry, KdlNode, KdlValue};

use super::ast::{Axis, Param, ParamType, ParamValue, Spanned, Step, Target, Template, UseStep};
use super::parse::{Entries, Parser, entries, is_var_name};
use crate::diag::Diagnostic;

/// Nodes a template body may not hold, with why.
const NOT_IN_TEMPLATE: &[(&str, &str)] = &[
    ("from", "a template's steps follow the `from` of the stage that uses it"),
    ("tag", "tags belong to the `image` that uses the template"),
    ("matrix", "a matrix belongs to a `stage` or an `image`"),
];

impl Parser {
    /// `template NAME { param …; steps… }`.
    pub(super) fn template(&mut self, node: &KdlNode) -> Option<Template> {
        let e = entries(node);
        self.only_props(node, &e, &[]);
        self.exact_args(node, &e, 1, "the template's name");
        let name = self.string(e.args.first()?)?;
        let mut template =
            Template { name, params: Vec::new(), steps: Vec::new(), span: node.span() };
        let Some(children) = node.children() else {
            self.error(Diagnostic::error(
                "empty-template",
                format!("template `{}` has no steps", template.name.value),
                node.span(),
                "expected a `{ … }` block of steps",
            ));
            return Some(template);
        };
        for child in children.nodes() {
            let child_name = child.name().value();
            if child_name == "param" {
                if let Some(p) = self.param(child, &template.params) {
                    template.params.push(p);
                }
            } else if let Some((_, why)) = NOT_IN_TEMPLATE.iter().find(|(n, _)| *n == child_name) {
                self.error(
                    Diagnostic::error(
                        "not-in-template",
                        format!("a template cannot hold `{child_name}`"),
                        child.name().span(),
                        "not allowed here",
                    )
                    .with_help(*why),
                );
            } else if let Some(kind) = self.step(child) {
                let (span, name_span) = (child.span(), child.name().span());
                template.steps.push(Step { kind, span, name_span, origin: None });
            }
        }
        Some(template)
    }

    /// `param NAME type="string|int|bool" default=… description="…"`.
    fn param(&mut self, node: &KdlNode, before: &[Param]) -> Option<Param> {
        self.no_children(node);
        let e = entries(node);
        self.only_props(node, &e, &["type", "default", "description"]);
        self.exact_args(node, &e, 1, "the parameter's name");
        let name = self.string(e.args.first()?)?;
        self.var_name(&name, "parameter");
        if let Some(first) = before.iter().find(|p| p.name.value == name.value) {
            self.error(
                Diagnostic::error(
                    "duplicate-param",
                    format!("parameter `{}` is declared twice", name.value),
                    name.span,
                    "second declaration",
                )
                .with_related(first.name.span, "first declared here"),
            );
            return None;
        }
        let ty = match e.prop("type").and_then(|t| self.string(t)) {
            None => ParamType::String,
            Some(t) => match t.value.as_str() {
                "string" => ParamType::String,
                "int" => ParamType::Int,
                "bool" => ParamType::Bool,
                _ => {
                    self.bad_choice(&t, &["string", "int", "bool"]);
                    return None;
                }
            },
        };
        let default = e.prop("default").and_then(|d| self.param_value(d));
        if let Some(d) = &default
            && d.value.ty() != ty
        {
            self.error(wrong_param_type(&name.value, ty, d));
        }
        let description = e.prop("description").and_then(|d| self.string(d)).map(|d| d.value);
        Some(Param { name, ty, default, description, span: node.span() })
    }

    /// A parameter's value: a string, an integer or a boolean, as KDL types it.
    fn param_value(&mut self, entry: &KdlEntry) -> Option<Spanned<ParamValue>> {
        let value = match entry.value() {
            KdlValue::String(s) => ParamValue::String(s.clone()),
            KdlValue::Integer(i) => ParamValue::Int(*i),
            KdlValue::Bool(b) => ParamValue::Bool(*b),
            other => {
                self.error(
                    Diagnostic::error(
                        "wrong-type",
                        format!("expected a string, an integer or a boolean, found `{other}`"),
                        entry.span(),
                        "not a parameter value",
                    )
                    .with_help("parameters are strings, integers or `#true`/`#false`"),
                );
                return None;
            }
        };
        Some(Spanned::new(value, entry.span()))
    }

    /// `use NAME param=value…`.
    pub(super) fn use_step(&mut self, node: &KdlNode, e: &Entries<'_>) -> Option<UseStep> {
        self.exact_args(node, e, 1, "the name of a template");
        let template = self.string(e.args.first()?)?;
        let mut values = Vec::new();
        for (key, entry) in &e.props {
            let key_span = entry.name().map_or(entry.span(), kdl::KdlIdentifier::span);
            if let Some(v) = self.param_value(entry) {
                values.push((Spanned::new((*key).to_owned(), key_span), v));
            }
        }
        Some(UseStep { template, values })
    }

    /// `matrix { NAME "v1" "v2" …; … }`: the axes of a target.
    pub(super) fn matrix(&mut self, node: &KdlNode, target: &mut Target) {
        let e = entries(node);
        self.only_props(node, &e, &[]);
        self.max_args(node, &e, 0);
        let Some(children) = node.children().filter(|c| !c.nodes().is_empty()) else {
            self.missing_arg(node, "a block of axes like `{ name \"a\" \"b\" }`");
            return;
        };
        for child in children.nodes() {
            if let Some(axis) = self.axis(child, &target.matrix) {
                target.matrix.push(axis);
            }
        }
    }

    fn axis(&mut self, node: &KdlNode, before: &[Axis]) -> Option<Axis> {
        self.no_children(node);
        let e = entries(node);
        self.only_props(node, &e, &[]);
        let name = Spanned::new(node.name().value().to_owned(), node.name().span());
        self.var_name(&name, "matrix axis");
        if let Some(first) = before.iter().find(|a| a.name.value == name.value) {
            self.error(
                Diagnostic::error(
                    "duplicate-axis",
                    format!("matrix axis `{}` is declared twice", name.value),
                    name.span,
                    "second declaration",
                )
                .with_related(first.name.span, "first declared here"),
            );
            return None;
        }
        if e.args.is_empty() {
            self.missing_arg(node, "at least one value");
            return None;
        }
        let values = e.args.iter().filter_map(|a| self.scalar(a)).collect();
        Some(Axis { name, values })
    }

    fn var_name(&mut self, name: &Spanned<String>, what: &str) {
        if !is_var_name(&name.value) {
            self.error(
                Diagnostic::error(
                    "invalid-arg-name",
                    format!("`{}` is not a valid {what} name", name.value),
                    name.span,
                    "invalid name",
                )
                .with_help("names are letters, digits and `_`, not starting with a digit"),
            );
        }
    }
}

/// A value whose KDL type is not the parameter's.
pub(crate) fn wrong_param_type(
    param: &str,
    ty: ParamType,
    value: &Spanned<ParamValue>,
) -> Diagnostic {
    let example = match ty {
        ParamType::String => "\"text\"",
        ParamType::Int => "8080",
        ParamType::Bool => "#true",
    };
    let a = |t: ParamType| match t {
        ParamType::String => "a string",
        ParamType::Int => "an int",
        ParamType::Bool => "a bool",
    };
    Diagnostic::error(
        "wrong-param-type",
        format!(
            "parameter `{param}` is {}, found the {} `{}`",
            a(ty),
            value.value.ty().name(),
            value.value.text()
        ),
        value.span,
        format!("not {}", a(ty)),
    )
    .with_help(format!("write {} like {example}", a(ty)))
}
