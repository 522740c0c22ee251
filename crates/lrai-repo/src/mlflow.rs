//! MLflow model directories as repository versions: a version directory holding an
//! `MLmodel` file (what `mlflow.onnx.save_model` writes) is served from the ONNX file its
//! `onnx` flavor (or a `python_function` flavor loaded by `mlflow.onnx`) names, with the
//! tensor names, types and shapes of its signature. What LRAI can't honour in `MLmodel`
//! (session options, execution providers, other flavors, column signatures) becomes a
//! warning, never a silent difference.

use std::path::{Component, Path, PathBuf};

use lrai_core::{DataType, Dim, TensorSpec};
use yaml_rust2::{Yaml, YamlLoader};

/// The file MLflow writes beside the model.
pub(crate) const MLMODEL: &str = "MLmodel";

/// `MLmodel` files are a few kB; anything far larger is not one.
const MAX_MLMODEL_BYTES: u64 = 1 << 20;

/// What LRAI takes from an `MLmodel` file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MlflowModel {
    /// The ONNX file, inside the version directory.
    pub(crate) onnx_file: PathBuf,
    /// The signature's inputs, when it is a tensor signature with names.
    pub(crate) inputs: Option<Vec<TensorSpec>>,
    /// The signature's outputs, likewise.
    pub(crate) outputs: Option<Vec<TensorSpec>>,
    /// What the file asks for that LRAI does not do.
    pub(crate) warnings: Vec<String>,
}

/// Reads `dir/MLmodel`; `Ok(None)` when there is none.
///
/// # Errors
/// A message naming the file and what to do: unreadable or not YAML, no ONNX flavor,
/// or an ONNX file outside `dir` or missing.
pub(crate) fn read(dir: &Path) -> Result<Option<MlflowModel>, String> {
    let path = dir.join(MLMODEL);
    if !path.is_file() {
        return Ok(None);
    }
    let doc = parse(&path)?;
    let mut warnings = Vec::new();
    let data = onnx_data(&doc, &path, &mut warnings)?;
    let onnx_file = inside(dir, &data, &path)?;
    let signature = &doc["signature"];
    let inputs = signature_side(&signature["inputs"], "inputs", &mut warnings);
    let outputs = signature_side(&signature["outputs"], "outputs", &mut warnings);
    if !matches!(signature["params"], Yaml::Null | Yaml::BadValue) {
        warnings.push(
            "signature params are not used: KServe v2 requests carry parameters per request".into(),
        );
    }
    Ok(Some(MlflowModel {
        onnx_file,
        inputs,
        outputs,
        warnings,
    }))
}

fn parse(path: &Path) -> Result<Yaml, String> {
    let shown = path.display();
    let len = fs_err::metadata(path).map_err(|e| e.to_string())?.len();
    if len > MAX_MLMODEL_BYTES {
        return Err(format!(
            "'{shown}' is {len} bytes, more than the {MAX_MLMODEL_BYTES} an MLmodel file may have"
        ));
    }
    let text = fs_err::read_to_string(path).map_err(|e| e.to_string())?;
    let mut docs = YamlLoader::load_from_str(&text)
        .map_err(|e| format!("'{shown}' is not valid YAML: {e}"))?;
    match docs.pop() {
        Some(doc @ Yaml::Hash(_)) if docs.is_empty() => Ok(doc),
        _ => Err(format!(
            "'{shown}' is not an MLmodel file (expected one YAML mapping with 'flavors')"
        )),
    }
}

/// The ONNX file the flavors name, with warnings for what LRAI ignores in them.
fn onnx_data(doc: &Yaml, path: &Path, warnings: &mut Vec<String>) -> Result<String, String> {
    let flavors = doc["flavors"]
        .as_hash()
        .ok_or_else(|| format!("'{}' has no 'flavors'", path.display()))?;
    let names: Vec<&str> = flavors.keys().filter_map(Yaml::as_str).collect();
    let onnx = &doc["flavors"]["onnx"];
    let pyfunc = &doc["flavors"]["python_function"];
    let from_pyfunc = pyfunc["loader_module"].as_str() == Some("mlflow.onnx");
    let data = onnx["data"]
        .as_str()
        .or_else(|| from_pyfunc.then(|| pyfunc["data"].as_str()).flatten())
        .ok_or_else(|| {
            format!(
                "'{}' has no onnx flavor (flavors: {}); LRAI serves ONNX models: save the model with mlflow.onnx.save_model",
                path.display(),
                names.join(", ")
            )
        })?;
    onnx_flavor_warnings(onnx, warnings);
    for other in names
        .iter()
        .filter(|n| !matches!(**n, "onnx" | "python_function"))
    {
        warnings.push(format!(
            "flavor '{other}' is ignored: LRAI serves the onnx flavor"
        ));
    }
    Ok(data.to_string())
}

fn onnx_flavor_warnings(onnx: &Yaml, warnings: &mut Vec<String>) {
    if !matches!(onnx["onnx_session_options"], Yaml::Null | Yaml::BadValue) {
        warnings.push(
            "onnx_session_options are ignored: set threads and optimization with LRAI's --intra-op-threads and --graph-optimization".into(),
        );
    }
    if let Some(providers) = onnx["providers"].as_vec() {
        let names: Vec<&str> = providers.iter().filter_map(Yaml::as_str).collect();
        warnings.push(format!(
            "providers [{}] are ignored: LRAI picks the backend (--backend, or parameters {{ key: \"lrai.backend\" }} in config.pbtxt)",
            names.join(", ")
        ));
    }
    if !matches!(onnx["code"], Yaml::Null | Yaml::BadValue) {
        warnings
            .push("code paths are ignored: LRAI runs no Python code from a model directory".into());
    }
}

/// `data` relative to `dir`, refused when it leaves the directory (by `..`, an absolute
/// path or a symbolic link) or is missing.
fn inside(dir: &Path, data: &str, path: &Path) -> Result<PathBuf, String> {
    let relative = Path::new(data);
    let plain = relative
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    let outside = || {
        format!(
            "'{}' names the ONNX file '{data}', outside its directory; paths in MLmodel must stay inside the version directory",
            path.display()
        )
    };
    if !plain {
        return Err(outside());
    }
    let file = dir.join(relative);
    let canonical = file.canonicalize().map_err(|_| {
        format!(
            "'{}' names the ONNX file '{data}', which is missing from '{}'",
            path.display(),
            dir.display()
        )
    })?;
    let root = dir.canonicalize().map_err(|e| e.to_string())?;
    if !canonical.starts_with(&root) || !canonical.is_file() {
        return Err(outside());
    }
    Ok(file)
}

/// One side of the signature (a JSON list in a YAML string), as tensor specs; `None`
/// with a warning when it can't name LRAI's tensors.
fn signature_side(value: &Yaml, side: &str, warnings: &mut Vec<String>) -> Option<Vec<TensorSpec>> {
    let text = value.as_str()?;
    match tensor_specs(text) {
        Ok(specs) => Some(specs),
        Err(why) => {
            warnings.push(format!(
                "signature {side} are not used ({why}); the ONNX model's own are"
            ));
            None
        }
    }
}

fn tensor_specs(text: &str) -> Result<Vec<TensorSpec>, String> {
    let items: Vec<serde_json::Value> =
        serde_json::from_str(text).map_err(|e| format!("not a JSON list: {e}"))?;
    items.iter().map(tensor_spec).collect()
}

fn tensor_spec(item: &serde_json::Value) -> Result<TensorSpec, String> {
    let kind = item["type"].as_str().unwrap_or("");
    if kind != "tensor" {
        return Err(format!(
            "a column-based signature (type '{kind}'); LRAI serves tensors"
        ));
    }
    let name = item["name"]
        .as_str()
        .ok_or("a tensor without a name")?
        .to_string();
    let spec = &item["tensor-spec"];
    let dtype_name = spec["dtype"].as_str().unwrap_or("");
    let dtype = numpy_dtype(dtype_name).ok_or_else(|| {
        format!("tensor '{name}' has dtype '{dtype_name}', which LRAI does not know")
    })?;
    let dims = spec["shape"]
        .as_array()
        .ok_or_else(|| format!("tensor '{name}' has no shape"))?
        .iter()
        .map(|d| match d.as_i64() {
            Some(-1) => Ok(Dim::Any),
            Some(n) => usize::try_from(n)
                .map(Dim::Fixed)
                .map_err(|_| format!("tensor '{name}' has dimension {n}")),
            None => Err(format!("tensor '{name}' has dimension {d}")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TensorSpec {
        name,
        dtype,
        dims: Some(dims),
    })
}

/// numpy's dtype names, as MLflow writes them.
fn numpy_dtype(name: &str) -> Option<DataType> {
    Some(match name {
        "bool" => DataType::Bool,
        "uint8" => DataType::U8,
        "uint16" => DataType::U16,
        "uint32" => DataType::U32,
        "uint64" => DataType::U64,
        "int8" => DataType::I8,
        "int16" => DataType::I16,
        "int32" => DataType::I32,
        "int64" => DataType::I64,
        "float16" => DataType::F16,
        "float32" => DataType::F32,
        "float64" => DataType::F64,
        "str" | "object" | "bytes" => DataType::Bytes,
        _ => return None,
    })
}

/// The model's own specs, with the signature's where they agree: the signature then
/// fixes what the model leaves free. A signature that disagrees (other names, types or
/// ranks) is not used, with a warning.
pub(crate) fn merge_specs(
    model: &[TensorSpec],
    signature: Option<&[TensorSpec]>,
    side: &str,
    warnings: &mut Vec<String>,
) -> Vec<TensorSpec> {
    let Some(signature) = signature else {
        return model.to_vec();
    };
    let merged: Result<Vec<_>, String> = model
        .iter()
        .map(|m| {
            let s = signature
                .iter()
                .find(|s| s.name == m.name)
                .ok_or_else(|| format!("it has no '{}'", m.name))?;
            merge_one(m, s)
        })
        .collect();
    match merged {
        Ok(specs) if signature.len() == model.len() => specs,
        Ok(_) => {
            warnings.push(format!("signature {side} are not used (they name tensors the ONNX model does not have); the ONNX model's own are"));
            model.to_vec()
        }
        Err(why) => {
            warnings.push(format!(
                "signature {side} are not used ({why}, unlike the ONNX model); the ONNX model's own are"
            ));
            model.to_vec()
        }
    }
}

fn merge_one(model: &TensorSpec, signature: &TensorSpec) -> Result<TensorSpec, String> {
    let name = &model.name;
    if model.dtype != signature.dtype {
        return Err(format!(
            "'{name}' is {} there, {} in the model",
            signature.dtype, model.dtype
        ));
    }
    let Some(dims) = &model.dims else {
        return Ok(signature.clone());
    };
    let sig_dims = signature.dims.as_deref().unwrap_or_default();
    if sig_dims.len() != dims.len() {
        return Err(format!(
            "'{name}' has rank {} there, {} in the model",
            sig_dims.len(),
            dims.len()
        ));
    }
    let dims = dims
        .iter()
        .zip(sig_dims)
        .map(|(m, s)| match (m, s) {
            (Dim::Fixed(a), Dim::Fixed(b)) if a != b => Err(format!(
                "'{name}' has dimension {b} there, {a} in the model"
            )),
            (Dim::Fixed(_), _) | (_, Dim::Any | Dim::Symbol(_)) => Ok(m.clone()),
            (_, Dim::Fixed(b)) => Ok(Dim::Fixed(*b)),
        })
        .collect::<Result<_, _>>()?;
    Ok(TensorSpec {
        name: name.clone(),
        dtype: model.dtype,
        dims: Some(dims),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIGNATURE: &str = r#"flavors:
  onnx:
    code: null
    data: model.onnx
    onnx_session_options: null
    providers:
    - CPUExecutionProvider
  python_function:
    data: model.onnx
    loader_module: mlflow.onnx
signature:
  inputs: '[{"name": "x", "type": "tensor", "tensor-spec": {"dtype": "float32", "shape":
    [-1, 4]}}]'
  outputs: '[{"name": "y", "type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 3]}}]'
  params: null
"#;

    fn dir_with(mlmodel: &str, files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(dir.path().join(MLMODEL), mlmodel).unwrap();
        for f in files {
            fs_err::write(dir.path().join(f), b"onnx").unwrap();
        }
        dir
    }

    fn spec(name: &str, dims: Vec<Dim>) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            dtype: DataType::F32,
            dims: Some(dims),
        }
    }

    #[test]
    fn reads_the_onnx_file_and_the_tensor_signature() {
        let dir = dir_with(SIGNATURE, &["model.onnx"]);
        let m = read(dir.path()).unwrap().unwrap();
        assert_eq!(m.onnx_file, dir.path().join("model.onnx"));
        assert_eq!(
            m.inputs.unwrap(),
            vec![spec("x", vec![Dim::Any, Dim::Fixed(4)])]
        );
        assert_eq!(m.outputs.unwrap()[0].name, "y");
        assert_eq!(m.warnings.len(), 1, "{:?}", m.warnings);
        assert!(m.warnings[0].contains("providers [CPUExecutionProvider] are ignored"));
    }

    #[test]
    fn no_mlmodel_is_not_mlflow() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
    }

    #[test]
    fn refuses_files_outside_the_directory_and_missing_ones() {
        for data in ["../model.onnx", "/etc/passwd", "sub/../../x.onnx"] {
            let text = SIGNATURE.replace("data: model.onnx", &format!("data: {data}"));
            let err = read(dir_with(&text, &[]).path()).unwrap_err();
            assert!(err.contains("outside its directory"), "{data}: {err}");
        }
        let err = read(dir_with(SIGNATURE, &[]).path()).unwrap_err();
        assert!(err.contains("which is missing"), "{err}");
    }

    #[test]
    fn other_flavors_and_bad_yaml_are_clear_errors() {
        let sk = "flavors:\n  sklearn:\n    pickled_model: model.pkl\n  python_function:\n    loader_module: mlflow.sklearn\n";
        let err = read(dir_with(sk, &[]).path()).unwrap_err();
        assert!(
            err.contains("no onnx flavor (flavors: sklearn, python_function)"),
            "{err}"
        );
        let err = read(dir_with("flavors: [unclosed", &[]).path()).unwrap_err();
        assert!(err.contains("is not valid YAML"), "{err}");
        let err = read(dir_with("- a list", &[]).path()).unwrap_err();
        assert!(err.contains("is not an MLmodel file"), "{err}");
    }

    #[test]
    fn column_signatures_are_a_warning() {
        let text = SIGNATURE.replace(
            r#"'[{"name": "x", "type": "tensor", "tensor-spec": {"dtype": "float32", "shape":
    [-1, 4]}}]'"#,
            r#"'[{"name": "a", "type": "double"}]'"#,
        );
        let m = read(dir_with(&text, &["model.onnx"]).path())
            .unwrap()
            .unwrap();
        assert_eq!(m.inputs, None);
        assert!(
            m.warnings
                .iter()
                .any(|w| w.contains("column-based signature")),
            "{:?}",
            m.warnings
        );
    }

    #[test]
    fn signature_fixes_free_dims_and_is_dropped_when_it_disagrees() {
        let model = [spec("x", vec![Dim::Symbol("n".into()), Dim::Any])];
        let mut warnings = Vec::new();
        let sig = [spec("x", vec![Dim::Any, Dim::Fixed(4)])];
        let merged = merge_specs(&model, Some(&sig), "inputs", &mut warnings);
        assert_eq!(
            merged,
            vec![spec("x", vec![Dim::Symbol("n".into()), Dim::Fixed(4)])]
        );
        assert!(warnings.is_empty());
        let other = [spec("z", vec![Dim::Any, Dim::Fixed(4)])];
        assert_eq!(
            merge_specs(&model, Some(&other), "inputs", &mut warnings),
            model
        );
        assert!(warnings[0].contains("it has no 'x'"), "{warnings:?}");
        let fixed = [spec("x", vec![Dim::Fixed(2), Dim::Fixed(5)])];
        let model = [spec("x", vec![Dim::Fixed(1), Dim::Any])];
        assert_eq!(
            merge_specs(&model, Some(&fixed), "inputs", &mut warnings),
            model
        );
        assert!(
            warnings[1].contains("dimension 2 there, 1 in the model"),
            "{warnings:?}"
        );
    }
}
