//! From the text tree to a typed [`ModelConfig`], following Triton's `model_config.proto`:
//! scalar types and ranges, enum names (or numbers), maps as `key`/`value` entries,
//! non-repeated fields given once, one member per `oneof`.
//!
//! Fields Triton has but LRAI does not implement, and fields Triton doesn't have, become
//! warnings instead of errors.

use std::collections::BTreeMap;
use std::path::Path;

use lrai_core::DataType;

use super::LRAI_PARAMETERS;
use super::model::{
    DynamicBatching, EnsembleScheduling, EnsembleStep, InstanceGroup, InstanceKind, ModelConfig,
    ModelInput, ModelOutput, ModelWarmup, QueuePolicy, VersionPolicy, WarmupData, WarmupInput,
};
use super::read::{Seen, boolean, data_type, enumeration, integer, join, label, message, string};
use super::schema::{
    DYNAMIC_BATCHING_FIELDS, ENSEMBLE_FIELDS, ENSEMBLE_STEP_FIELDS, INPUT_FIELDS, INPUT_FORMATS,
    INSTANCE_GROUP_FIELDS, INSTANCE_KINDS, MAP_ENTRY_FIELDS, MODEL_CONFIG_FIELDS, OUTPUT_FIELDS,
    PARAMETER_FIELDS, QUEUE_POLICY_FIELDS, SCHEDULING, TIMEOUT_ACTIONS, UNSUPPORTED_INSTANCE_GROUP,
    UNSUPPORTED_TOP, VERSION_POLICY_FIELDS, WARMUP_DATA, WARMUP_FIELDS, WARMUP_INPUT_FIELDS,
};
use super::text::{self, Field, Message, Pos};
use super::warning::{ConfigWarning, closest, lrai_parameter};
use crate::{RepoError, Result};

impl ModelConfig {
    /// Parses and validates `config.pbtxt` text of the model in directory `dir_name`.
    ///
    /// An empty or missing `name` becomes `dir_name`; any other name must equal it.
    ///
    /// # Errors
    /// [`RepoError::Syntax`] for text that is not protobuf text format;
    /// [`RepoError::FieldType`], [`RepoError::DuplicateField`],
    /// [`RepoError::OneofConflict`] and [`RepoError::MissingField`] for values that do not
    /// fit Triton's schema; [`RepoError::NameMismatch`]; and the rule violations listed at
    /// [`ModelConfig::validate`].
    pub fn from_text(text: &str, dir_name: &str) -> Result<(ModelConfig, Vec<ConfigWarning>)> {
        let tree = text::parse(text)?;
        let mut decoder = Decoder {
            model: dir_name.to_string(),
            warnings: Vec::new(),
        };
        let mut config = decoder.model_config(&tree)?;
        if config.name.is_empty() {
            config.name = dir_name.to_string();
        } else if config.name != dir_name {
            return Err(RepoError::NameMismatch {
                name: config.name,
                dir: dir_name.to_string(),
            });
        }
        config.validate()?;
        Ok((config, decoder.warnings))
    }

    /// Reads, parses and validates a `config.pbtxt` file (see [`ModelConfig::from_text`]).
    ///
    /// # Errors
    /// [`RepoError::Io`] when the file cannot be read (the message names it); otherwise
    /// [`RepoError::ConfigFile`] naming the file, with the parse or validation error as
    /// its source.
    pub fn from_file(path: &Path, dir_name: &str) -> Result<(ModelConfig, Vec<ConfigWarning>)> {
        let text = fs_err::read_to_string(path)?;
        ModelConfig::from_text(&text, dir_name).map_err(|e| RepoError::ConfigFile {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }
}

struct Decoder {
    /// The directory name, used in errors before `name` is known.
    model: String,
    warnings: Vec<ConfigWarning>,
}

impl Decoder {
    fn invalid(
        &self,
        field: impl Into<String>,
        value: &dyn std::fmt::Display,
        rule: &str,
    ) -> RepoError {
        RepoError::Invalid {
            model: self.model.clone(),
            field: field.into(),
            value: value.to_string(),
            rule: rule.to_string(),
        }
    }

    /// Warns about a field this message does not implement (`unsupported`) or know.
    fn skip(
        &mut self,
        seen: &mut Seen,
        f: &Field,
        prefix: &str,
        known: &[&'static str],
        unsupported: &[&str],
    ) {
        if !seen.first_warning(&f.name) {
            return;
        }
        let field = join(prefix, &f.name);
        let warning = if unsupported.contains(&f.name.as_str()) {
            ConfigWarning::Unsupported { field, pos: f.pos }
        } else {
            ConfigWarning::UnknownField {
                field,
                pos: f.pos,
                suggestion: closest(&f.name, known),
            }
        };
        self.warnings.push(warning);
    }

    fn model_config(&mut self, m: &Message) -> Result<ModelConfig> {
        let mut c = ModelConfig::default();
        let mut seen = Seen::default();
        let (mut n_in, mut n_out, mut n_group, mut n_warmup) = (0usize, 0usize, 0usize, 0usize);
        for f in &m.fields {
            let path = f.name.as_str();
            match path {
                "name" | "platform" | "backend" | "default_model_filename" => {
                    seen.once(f, path)?;
                    let s = string(f, path)?;
                    match path {
                        "name" => c.name = s,
                        "platform" => c.platform = s,
                        "backend" => c.backend = s,
                        _ => c.default_model_filename = s,
                    }
                }
                "max_batch_size" => {
                    seen.once(f, path)?;
                    let v: i32 = integer(f, path, "int32")?;
                    let v = u32::try_from(v).map_err(|_| {
                        self.invalid(path, &v, "must be >= 0 (0: the model does not batch)")
                    })?;
                    c.max_batch_size = Some(v);
                }
                "version_policy" => {
                    seen.once(f, path)?;
                    c.version_policy = self.version_policy(message(f, path)?, path)?;
                }
                "input" => {
                    let p = format!("input[{n_in}]");
                    n_in += 1;
                    c.input.push(self.input(message(f, &p)?, &p)?);
                }
                "output" => {
                    let p = format!("output[{n_out}]");
                    n_out += 1;
                    c.output.push(self.output(message(f, &p)?, &p)?);
                }
                "dynamic_batching" => {
                    seen.oneof(f, path, "", SCHEDULING)?;
                    seen.once(f, path)?;
                    c.dynamic_batching = Some(self.dynamic_batching(message(f, path)?, path)?);
                }
                "sequence_batching" => {
                    seen.oneof(f, path, "", SCHEDULING)?;
                    seen.once(f, path)?;
                    self.skip(&mut seen, f, "", MODEL_CONFIG_FIELDS, UNSUPPORTED_TOP);
                }
                "ensemble_scheduling" => {
                    seen.oneof(f, path, "", SCHEDULING)?;
                    seen.once(f, path)?;
                    c.ensemble_scheduling = Some(self.ensemble(message(f, path)?, path)?);
                }
                "instance_group" => {
                    let p = format!("instance_group[{n_group}]");
                    n_group += 1;
                    c.instance_group
                        .push(self.instance_group(message(f, &p)?, &p)?);
                }
                "parameters" => {
                    self.parameter(message(f, path)?, f.value_pos, &mut c.parameters)?;
                }
                "model_warmup" => {
                    let p = format!("model_warmup[{n_warmup}]");
                    n_warmup += 1;
                    c.model_warmup.push(self.warmup(message(f, &p)?, &p)?);
                }
                _ => self.skip(&mut seen, f, "", MODEL_CONFIG_FIELDS, UNSUPPORTED_TOP),
            }
        }
        Ok(c)
    }

    fn version_policy(&mut self, m: &Message, prefix: &str) -> Result<VersionPolicy> {
        let mut policy = VersionPolicy::default();
        let mut seen = Seen::default();
        for f in &m.fields {
            let path = join(prefix, &f.name);
            match f.name.as_str() {
                "latest" | "all" | "specific" => {
                    seen.oneof(f, &path, prefix, VERSION_POLICY_FIELDS)?;
                    seen.once(f, &path)?;
                    policy = self.version_choice(f, &path)?;
                }
                _ => self.skip(&mut seen, f, prefix, VERSION_POLICY_FIELDS, &[]),
            }
        }
        Ok(policy)
    }

    fn version_choice(&mut self, f: &Field, path: &str) -> Result<VersionPolicy> {
        let m = message(f, path)?;
        let mut seen = Seen::default();
        let mut num_versions = 0u32;
        let mut versions = Vec::new();
        let known: &[&'static str] = match f.name.as_str() {
            "latest" => &["num_versions"],
            "specific" => &["versions"],
            _ => &[],
        };
        for g in &m.fields {
            let p = join(path, &g.name);
            match (f.name.as_str(), g.name.as_str()) {
                ("latest", "num_versions") => {
                    seen.once(g, &p)?;
                    num_versions = integer(g, &p, "uint32")?;
                }
                ("specific", "versions") => versions.push(integer(g, &p, "int64")?),
                _ => self.skip(&mut seen, g, path, known, &[]),
            }
        }
        Ok(match f.name.as_str() {
            "latest" => VersionPolicy::Latest { num_versions },
            "specific" => VersionPolicy::Specific { versions },
            _ => VersionPolicy::All,
        })
    }

    fn reshape(&mut self, f: &Field, path: &str) -> Result<Vec<i64>> {
        let m = message(f, path)?;
        let mut shape = Vec::new();
        let mut seen = Seen::default();
        for g in &m.fields {
            let p = join(path, &g.name);
            if g.name == "shape" {
                shape.push(integer(g, &p, "int64")?);
            } else {
                self.skip(&mut seen, g, path, &["shape"], &[]);
            }
        }
        Ok(shape)
    }

    fn input(&mut self, m: &Message, prefix: &str) -> Result<ModelInput> {
        let mut seen = Seen::default();
        let mut input = ModelInput::new("", DataType::F32, Vec::new());
        let mut dtype = None;
        for f in &m.fields {
            let path = join(prefix, &f.name);
            match f.name.as_str() {
                "name" => {
                    seen.once(f, &path)?;
                    input.name = string(f, &path)?;
                }
                "data_type" => {
                    seen.once(f, &path)?;
                    dtype = Some(data_type(f, &path)?);
                }
                "format" => {
                    seen.once(f, &path)?;
                    input.format = enumeration(f, &path, INPUT_FORMATS)?;
                }
                "dims" => input.dims.push(integer(f, &path, "int64")?),
                "reshape" => {
                    seen.once(f, &path)?;
                    input.reshape = Some(self.reshape(f, &path)?);
                }
                "is_shape_tensor" => {
                    seen.once(f, &path)?;
                    input.is_shape_tensor = boolean(f, &path)?;
                }
                "allow_ragged_batch" => {
                    seen.once(f, &path)?;
                    input.allow_ragged_batch = boolean(f, &path)?;
                }
                "optional" => {
                    seen.once(f, &path)?;
                    input.optional = boolean(f, &path)?;
                }
                _ => self.skip(
                    &mut seen,
                    f,
                    prefix,
                    INPUT_FIELDS,
                    &["is_non_linear_format_io"],
                ),
            }
        }
        input.data_type = self.required(dtype, prefix, &input.name, "data_type")?;
        Ok(input)
    }

    fn output(&mut self, m: &Message, prefix: &str) -> Result<ModelOutput> {
        let mut seen = Seen::default();
        let mut output = ModelOutput::new("", DataType::F32, Vec::new());
        let mut dtype = None;
        for f in &m.fields {
            let path = join(prefix, &f.name);
            match f.name.as_str() {
                "name" => {
                    seen.once(f, &path)?;
                    output.name = string(f, &path)?;
                }
                "data_type" => {
                    seen.once(f, &path)?;
                    dtype = Some(data_type(f, &path)?);
                }
                "dims" => output.dims.push(integer(f, &path, "int64")?),
                "reshape" => {
                    seen.once(f, &path)?;
                    output.reshape = Some(self.reshape(f, &path)?);
                }
                "label_filename" => {
                    seen.once(f, &path)?;
                    let s = string(f, &path)?;
                    output.label_filename = (!s.is_empty()).then_some(s);
                }
                "is_shape_tensor" => {
                    seen.once(f, &path)?;
                    output.is_shape_tensor = boolean(f, &path)?;
                }
                _ => self.skip(
                    &mut seen,
                    f,
                    prefix,
                    OUTPUT_FIELDS,
                    &["is_non_linear_format_io"],
                ),
            }
        }
        output.data_type = self.required(dtype, prefix, &output.name, "data_type")?;
        Ok(output)
    }

    fn required<T>(&self, value: Option<T>, prefix: &str, name: &str, field: &str) -> Result<T> {
        value.ok_or_else(|| RepoError::MissingField {
            model: self.model.clone(),
            field: label(prefix, name, field),
        })
    }

    fn ensemble(&mut self, m: &Message, prefix: &str) -> Result<EnsembleScheduling> {
        let mut seen = Seen::default();
        let mut e = EnsembleScheduling::default();
        for f in &m.fields {
            let path = join(prefix, &f.name);
            match f.name.as_str() {
                "step" => {
                    let p = format!("{prefix}.step[{}]", e.step.len());
                    e.step.push(self.ensemble_step(message(f, &p)?, &p)?);
                }
                // Parsed for its type; LRAI bounds in-flight work with the step models' queues.
                "max_inflight_requests" => {
                    seen.once(f, &path)?;
                    integer::<u32>(f, &path, "uint32")?;
                    self.skip(
                        &mut seen,
                        f,
                        prefix,
                        ENSEMBLE_FIELDS,
                        &["max_inflight_requests"],
                    );
                }
                _ => self.skip(&mut seen, f, prefix, ENSEMBLE_FIELDS, &[]),
            }
        }
        Ok(e)
    }

    fn ensemble_step(&mut self, m: &Message, prefix: &str) -> Result<EnsembleStep> {
        let mut seen = Seen::default();
        let mut step = EnsembleStep::new("");
        for f in &m.fields {
            let path = join(prefix, &f.name);
            match f.name.as_str() {
                "model_name" => {
                    seen.once(f, &path)?;
                    step.model_name = string(f, &path)?;
                }
                "model_version" => {
                    seen.once(f, &path)?;
                    step.model_version = integer(f, &path, "int64")?;
                }
                "input_map" | "output_map" => {
                    let (key, value) = self.map_entry(message(f, &path)?, &path)?;
                    let key = key.map_or(Ok(String::new()), |k| string(k, &join(&path, "key")))?;
                    let value =
                        value.map_or(Ok(String::new()), |v| string(v, &join(&path, "value")))?;
                    let map = if f.name == "input_map" {
                        &mut step.input_map
                    } else {
                        &mut step.output_map
                    };
                    // A map key given twice would silently drop a mapping: refuse it.
                    if let Some(first) = map.insert(key.clone(), value) {
                        return Err(self.invalid(
                            format!("{path}['{key}']"),
                            &format!("\"{first}\""),
                            &format!(
                                "'{key}' is mapped twice in this step; map each {} once",
                                if f.name == "input_map" {
                                    "step input"
                                } else {
                                    "step output"
                                }
                            ),
                        ));
                    }
                }
                _ => self.skip(
                    &mut seen,
                    f,
                    prefix,
                    ENSEMBLE_STEP_FIELDS,
                    &["model_namespace"],
                ),
            }
        }
        Ok(step)
    }

    fn dynamic_batching(&mut self, m: &Message, prefix: &str) -> Result<DynamicBatching> {
        let mut seen = Seen::default();
        let mut db = DynamicBatching::default();
        for f in &m.fields {
            let path = join(prefix, &f.name);
            match f.name.as_str() {
                "preferred_batch_size" => {
                    let v: i32 = integer(f, &path, "int32")?;
                    let v = u32::try_from(v)
                        .ok()
                        .filter(|v| *v > 0)
                        .ok_or_else(|| self.invalid(&path, &v, "each size must be >= 1"))?;
                    db.preferred_batch_size.push(v);
                }
                "max_queue_delay_microseconds" => {
                    seen.once(f, &path)?;
                    db.max_queue_delay_microseconds = integer(f, &path, "uint64")?;
                }
                "preserve_ordering" => {
                    seen.once(f, &path)?;
                    db.preserve_ordering = boolean(f, &path)?;
                }
                "priority_levels" => {
                    seen.once(f, &path)?;
                    db.priority_levels = integer(f, &path, "uint64")?;
                }
                "default_priority_level" => {
                    seen.once(f, &path)?;
                    db.default_priority_level = integer(f, &path, "uint64")?;
                }
                "default_queue_policy" => {
                    seen.once(f, &path)?;
                    db.default_queue_policy = Some(self.queue_policy(message(f, &path)?, &path)?);
                }
                "priority_queue_policy" => {
                    let entry = message(f, &path)?;
                    let (key, value) = self.map_entry(entry, &path)?;
                    let level: u64 = match key {
                        Some(k) => integer(k, &join(&path, "key"), "uint64")?,
                        None => 0,
                    };
                    let policy = match value {
                        Some(v) => {
                            let p = join(&path, "value");
                            self.queue_policy(message(v, &p)?, &p)?
                        }
                        None => QueuePolicy::default(),
                    };
                    if db.priority_queue_policy.insert(level, policy).is_some() {
                        self.warnings.push(ConfigWarning::DuplicateKey {
                            field: path.clone(),
                            key: level.to_string(),
                            pos: f.value_pos,
                        });
                    }
                }
                _ => self.skip(&mut seen, f, prefix, DYNAMIC_BATCHING_FIELDS, &[]),
            }
        }
        Ok(db)
    }

    fn queue_policy(&mut self, m: &Message, prefix: &str) -> Result<QueuePolicy> {
        let mut seen = Seen::default();
        let mut q = QueuePolicy::default();
        for f in &m.fields {
            let path = join(prefix, &f.name);
            match f.name.as_str() {
                "timeout_action" => {
                    seen.once(f, &path)?;
                    q.timeout_action = enumeration(f, &path, TIMEOUT_ACTIONS)?;
                }
                "default_timeout_microseconds" => {
                    seen.once(f, &path)?;
                    q.default_timeout_microseconds = integer(f, &path, "uint64")?;
                }
                "allow_timeout_override" => {
                    seen.once(f, &path)?;
                    q.allow_timeout_override = boolean(f, &path)?;
                }
                "max_queue_size" => {
                    seen.once(f, &path)?;
                    q.max_queue_size = integer(f, &path, "uint32")?;
                }
                _ => self.skip(&mut seen, f, prefix, QUEUE_POLICY_FIELDS, &[]),
            }
        }
        Ok(q)
    }

    /// The `key` and `value` fields of one map entry.
    fn map_entry<'m>(
        &mut self,
        m: &'m Message,
        prefix: &str,
    ) -> Result<(Option<&'m Field>, Option<&'m Field>)> {
        let mut seen = Seen::default();
        let (mut key, mut value) = (None, None);
        for f in &m.fields {
            let path = join(prefix, &f.name);
            match f.name.as_str() {
                "key" => {
                    seen.once(f, &path)?;
                    key = Some(f);
                }
                "value" => {
                    seen.once(f, &path)?;
                    value = Some(f);
                }
                _ => self.skip(&mut seen, f, prefix, MAP_ENTRY_FIELDS, &[]),
            }
        }
        Ok((key, value))
    }

    fn instance_group(&mut self, m: &Message, prefix: &str) -> Result<InstanceGroup> {
        let mut seen = Seen::default();
        let mut g = InstanceGroup::new(InstanceKind::Auto);
        for f in &m.fields {
            let path = join(prefix, &f.name);
            match f.name.as_str() {
                "name" => {
                    seen.once(f, &path)?;
                    g.name = string(f, &path)?;
                }
                "kind" => {
                    seen.once(f, &path)?;
                    g.kind = enumeration(f, &path, INSTANCE_KINDS)?;
                }
                "count" => {
                    seen.once(f, &path)?;
                    let v: i32 = integer(f, &path, "int32")?;
                    g.count = u32::try_from(v).ok().filter(|v| *v >= 1).ok_or_else(|| {
                        self.invalid(&path, &v, "an instance group needs count >= 1")
                    })?;
                }
                "gpus" => {
                    let v: i32 = integer(f, &path, "int32")?;
                    if v < 0 {
                        return Err(self.invalid(&path, &v, "GPU ids are >= 0"));
                    }
                    g.gpus.push(v);
                }
                _ => self.skip(
                    &mut seen,
                    f,
                    prefix,
                    INSTANCE_GROUP_FIELDS,
                    UNSUPPORTED_INSTANCE_GROUP,
                ),
            }
        }
        Ok(g)
    }

    fn parameter(
        &mut self,
        entry: &Message,
        pos: Pos,
        out: &mut BTreeMap<String, String>,
    ) -> Result<()> {
        let (key, value) = self.map_entry(entry, "parameters")?;
        let key = match key {
            Some(k) => string(k, "parameters.key")?,
            None => String::new(),
        };
        let mut string_value = String::new();
        if let Some(v) = value {
            let mut seen = Seen::default();
            for f in &message(v, "parameters.value")?.fields {
                let path = join("parameters.value", &f.name);
                if f.name == "string_value" {
                    seen.once(f, &path)?;
                    string_value = string(f, &path)?;
                } else {
                    self.skip(&mut seen, f, "parameters.value", PARAMETER_FIELDS, &[]);
                }
            }
        }
        if key.starts_with("lrai.") && lrai_parameter(&key).is_none() {
            let known: Vec<&'static str> = LRAI_PARAMETERS.iter().map(|p| p.key).collect();
            self.warnings.push(ConfigWarning::UnknownLraiParameter {
                suggestion: closest(&key, &known),
                key: key.clone(),
                pos,
            });
        }
        if out.insert(key.clone(), string_value).is_some() {
            self.warnings.push(ConfigWarning::DuplicateKey {
                field: "parameters".to_string(),
                key,
                pos,
            });
        }
        Ok(())
    }

    fn warmup(&mut self, m: &Message, prefix: &str) -> Result<ModelWarmup> {
        let mut seen = Seen::default();
        let mut w = ModelWarmup {
            name: String::new(),
            batch_size: 0,
            inputs: BTreeMap::new(),
            count: 0,
        };
        for f in &m.fields {
            let path = join(prefix, &f.name);
            match f.name.as_str() {
                "name" => {
                    seen.once(f, &path)?;
                    w.name = string(f, &path)?;
                }
                "batch_size" => {
                    seen.once(f, &path)?;
                    w.batch_size = integer(f, &path, "uint32")?;
                }
                "count" => {
                    seen.once(f, &path)?;
                    w.count = integer(f, &path, "uint32")?;
                }
                "inputs" => {
                    let (key, value) = self.map_entry(message(f, &path)?, &path)?;
                    let name = match key {
                        Some(k) => string(k, &join(&path, "key"))?,
                        None => String::new(),
                    };
                    let p = format!("{path}['{name}']");
                    let Some(value) = value else {
                        return Err(RepoError::MissingField {
                            model: self.model.clone(),
                            field: format!("{p} value"),
                        });
                    };
                    let input = self.warmup_input(message(value, &p)?, &p)?;
                    if w.inputs.insert(name.clone(), input).is_some() {
                        self.warnings.push(ConfigWarning::DuplicateKey {
                            field: path.clone(),
                            key: name,
                            pos: f.value_pos,
                        });
                    }
                }
                _ => self.skip(&mut seen, f, prefix, WARMUP_FIELDS, &[]),
            }
        }
        Ok(w)
    }

    fn warmup_input(&mut self, m: &Message, prefix: &str) -> Result<WarmupInput> {
        let mut seen = Seen::default();
        let (mut dtype, mut dims, mut data) = (None, Vec::new(), None);
        for f in &m.fields {
            let path = join(prefix, &f.name);
            match f.name.as_str() {
                "data_type" => {
                    seen.once(f, &path)?;
                    dtype = Some(data_type(f, &path)?);
                }
                "dims" => dims.push(integer(f, &path, "int64")?),
                "zero_data" | "random_data" | "input_data_file" => {
                    seen.oneof(f, &path, prefix, WARMUP_DATA)?;
                    seen.once(f, &path)?;
                    data = Some(match f.name.as_str() {
                        "zero_data" => {
                            boolean(f, &path)?;
                            WarmupData::Zero
                        }
                        "random_data" => {
                            boolean(f, &path)?;
                            WarmupData::Random
                        }
                        _ => WarmupData::File(string(f, &path)?),
                    });
                }
                _ => self.skip(&mut seen, f, prefix, WARMUP_INPUT_FIELDS, &[]),
            }
        }
        let missing = |field: &str| RepoError::MissingField {
            model: self.model.clone(),
            field: format!("{prefix} {field}"),
        };
        Ok(WarmupInput {
            data_type: dtype.ok_or_else(|| missing("data_type"))?,
            dims,
            data: data.ok_or_else(|| missing("zero_data, random_data or input_data_file"))?,
        })
    }
}
