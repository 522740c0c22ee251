//! Plugs `lrai-quant`'s quantize-at-load into the repository's [`ModelPrep`] hook:
//! lrai-repo may not depend on lrai-quant, so the composition root joins them here.

use lrai_repo::{ModelPrep, PrepRequest, Prepared};

/// Quantizes models whose config sets `lrai.quantize`, or reuses the cached result.
#[derive(Debug, Default)]
pub(crate) struct QuantizeAtLoad;

impl ModelPrep for QuantizeAtLoad {
    fn prepare(&self, req: &PrepRequest<'_>) -> Result<Option<Prepared>, String> {
        let serve = lrai_quant::serving::ServeRequest {
            model: req.model,
            model_path: req.model_path,
            model_dir: req.model_dir,
            parameters: req.parameters,
            backend: req.backend,
            options: req.options,
        };
        match lrai_quant::serving::prepare_for_serving(&serve) {
            Ok(p) => Ok(p.map(|p| Prepared {
                path: p.path,
                reused: p.reused,
                summary: p.summary,
                report_path: Some(p.report_path),
            })),
            Err(e) => {
                // The chain matters: "calibration data 'x': ..." alone may hide the I/O cause.
                let mut text = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    let s_text = s.to_string();
                    if !text.contains(&s_text) {
                        text.push_str(": ");
                        text.push_str(&s_text);
                    }
                    source = s.source();
                }
                Err(format!(
                    "quantize-at-load (parameters lrai.quantize*) failed: {text}"
                ))
            }
        }
    }
}
