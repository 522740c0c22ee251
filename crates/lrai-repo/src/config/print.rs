//! The model configuration written back as `config.pbtxt` text, in the layout Triton's
//! examples use. [`ModelConfig::from_text`] reads it back to an equal value, so a completed
//! configuration can be saved as a starting point for a hand-edited file.

use std::fmt::Write;

use super::model::{
    DynamicBatching, InputFormat, ModelConfig, QueuePolicy, TimeoutAction, VersionPolicy,
    WarmupData, datatype_to_config,
};

impl ModelConfig {
    /// This configuration as `config.pbtxt` text. Fields at their defaults are left out
    /// (except `default_model_filename` and instance `count`/`kind`, which read clearer).
    pub fn to_pbtxt(&self) -> String {
        let mut p = Printer::default();
        p.string("name", &self.name);
        p.string("platform", &self.platform);
        p.string("backend", &self.backend);
        if let Some(mbs) = self.max_batch_size {
            p.line(&format!("max_batch_size: {mbs}"));
        }
        if self.version_policy != VersionPolicy::default() {
            p.open("version_policy");
            match &self.version_policy {
                VersionPolicy::Latest { num_versions } => {
                    p.line(&format!("latest {{ num_versions: {num_versions} }}"));
                }
                VersionPolicy::All => p.line("all { }"),
                VersionPolicy::Specific { versions } => {
                    p.line(&format!("specific {{ versions: {} }}", list(versions)));
                }
            }
            p.close();
        }
        p.list("input", &self.input, |p, i| {
            p.string("name", &i.name);
            p.line(&format!("data_type: {}", datatype_to_config(i.data_type)));
            if i.format != InputFormat::None {
                p.line(&format!("format: {}", i.format.as_config()));
            }
            p.line(&format!("dims: {}", list(&i.dims)));
            if let Some(r) = &i.reshape {
                p.line(&format!("reshape: {{ shape: {} }}", list(r)));
            }
            p.flag("is_shape_tensor", i.is_shape_tensor);
            p.flag("allow_ragged_batch", i.allow_ragged_batch);
            p.flag("optional", i.optional);
        });
        p.list("output", &self.output, |p, o| {
            p.string("name", &o.name);
            p.line(&format!("data_type: {}", datatype_to_config(o.data_type)));
            p.line(&format!("dims: {}", list(&o.dims)));
            if let Some(r) = &o.reshape {
                p.line(&format!("reshape: {{ shape: {} }}", list(r)));
            }
            if let Some(l) = &o.label_filename {
                p.string("label_filename", l);
            }
            p.flag("is_shape_tensor", o.is_shape_tensor);
        });
        if let Some(db) = &self.dynamic_batching {
            dynamic_batching(&mut p, db);
        }
        if let Some(e) = &self.ensemble_scheduling {
            p.open("ensemble_scheduling");
            p.list("step", &e.step, |p, s| {
                p.string_always("model_name", &s.model_name);
                p.line(&format!("model_version: {}", s.model_version));
                for (kind, map) in [("input_map", &s.input_map), ("output_map", &s.output_map)] {
                    for (k, v) in map {
                        p.line(&format!(
                            "{kind} {{ key: {} value: {} }}",
                            quote(k),
                            quote(v)
                        ));
                    }
                }
            });
            p.close();
        }
        p.list("instance_group", &self.instance_group, |p, g| {
            p.string("name", &g.name);
            p.line(&format!("count: {}", g.count));
            p.line(&format!("kind: {}", g.kind.as_config()));
            if !g.gpus.is_empty() {
                p.line(&format!("gpus: {}", list(&g.gpus)));
            }
        });
        p.line(&format!(
            "default_model_filename: {}",
            quote(&self.default_model_filename)
        ));
        for (key, value) in &self.parameters {
            p.open("parameters");
            p.string("key", key);
            p.line(&format!("value: {{ string_value: {} }}", quote(value)));
            p.close();
        }
        p.list("model_warmup", &self.model_warmup, |p, w| {
            p.string("name", &w.name);
            p.line(&format!("batch_size: {}", w.batch_size));
            for (name, input) in &w.inputs {
                p.open("inputs");
                p.string("key", name);
                p.open("value");
                p.line(&format!(
                    "data_type: {}",
                    datatype_to_config(input.data_type)
                ));
                p.line(&format!("dims: {}", list(&input.dims)));
                match &input.data {
                    WarmupData::Zero => p.line("zero_data: true"),
                    WarmupData::Random => p.line("random_data: true"),
                    WarmupData::File(f) => p.string_always("input_data_file", f),
                }
                p.close();
                p.close();
            }
            if w.count > 0 {
                p.line(&format!("count: {}", w.count));
            }
        });
        p.out
    }
}

fn dynamic_batching(p: &mut Printer, db: &DynamicBatching) {
    p.open("dynamic_batching");
    if !db.preferred_batch_size.is_empty() {
        p.line(&format!(
            "preferred_batch_size: {}",
            list(&db.preferred_batch_size)
        ));
    }
    p.number(
        "max_queue_delay_microseconds",
        db.max_queue_delay_microseconds,
    );
    p.flag("preserve_ordering", db.preserve_ordering);
    p.number("priority_levels", db.priority_levels);
    p.number("default_priority_level", db.default_priority_level);
    if let Some(q) = &db.default_queue_policy {
        p.open("default_queue_policy");
        queue_policy(p, q);
        p.close();
    }
    for (level, q) in &db.priority_queue_policy {
        p.open("priority_queue_policy");
        p.line(&format!("key: {level}"));
        p.open("value");
        queue_policy(p, q);
        p.close();
        p.close();
    }
    p.close();
}

fn queue_policy(p: &mut Printer, q: &QueuePolicy) {
    if q.timeout_action != TimeoutAction::Reject {
        p.line(&format!("timeout_action: {}", q.timeout_action.as_config()));
    }
    p.number(
        "default_timeout_microseconds",
        q.default_timeout_microseconds,
    );
    p.flag("allow_timeout_override", q.allow_timeout_override);
    p.number("max_queue_size", u64::from(q.max_queue_size));
}

#[derive(Default)]
struct Printer {
    out: String,
    indent: usize,
}

impl Printer {
    fn line(&mut self, text: &str) {
        for _ in 0..self.indent {
            self.out.push_str("  ");
        }
        self.out.push_str(text);
        self.out.push('\n');
    }

    fn open(&mut self, name: &str) {
        self.line(&format!("{name} {{"));
        self.indent += 1;
    }

    fn close(&mut self) {
        self.indent = self.indent.saturating_sub(1);
        self.line("}");
    }

    /// A string field, left out when empty.
    fn string(&mut self, name: &str, value: &str) {
        if !value.is_empty() {
            self.string_always(name, value);
        }
    }

    fn string_always(&mut self, name: &str, value: &str) {
        self.line(&format!("{name}: {}", quote(value)));
    }

    /// A boolean field, left out when false.
    fn flag(&mut self, name: &str, value: bool) {
        if value {
            self.line(&format!("{name}: true"));
        }
    }

    /// A number field, left out when 0.
    fn number(&mut self, name: &str, value: u64) {
        if value != 0 {
            self.line(&format!("{name}: {value}"));
        }
    }

    /// A repeated message field as `name [ { … }, { … } ]`.
    fn list<T>(&mut self, name: &str, items: &[T], mut body: impl FnMut(&mut Printer, &T)) {
        if items.is_empty() {
            return;
        }
        self.line(&format!("{name} ["));
        self.indent += 1;
        for (i, item) in items.iter().enumerate() {
            self.line("{");
            self.indent += 1;
            body(self, item);
            self.indent = self.indent.saturating_sub(1);
            self.line(if i + 1 < items.len() { "}," } else { "}" });
        }
        self.indent = self.indent.saturating_sub(1);
        self.line("]");
    }
}

fn list<T: ToString>(items: &[T]) -> String {
    let inner: Vec<String> = items.iter().map(ToString::to_string).collect();
    format!("[ {} ]", inner.join(", "))
}

/// A protobuf text string literal. Control characters use 3-digit octal escapes, which
/// cannot swallow a following digit the way `\x` escapes can.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() && u32::from(c) < 0x80 => {
                let _ = write!(out, "\\{:03o}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_strings_so_they_parse_back() {
        assert_eq!(quote("a\"b\\c\n\u{1}1é"), r#""a\"b\\c\n\0011é""#);
    }
}
