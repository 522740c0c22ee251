//! Error messages for callers without a token name no filesystem path: anything that looks
//! like one becomes `<path>`. Model names can't hold a slash, so they survive.

/// `msg` with every word that holds a `/` or `\` replaced by `<path>` (quotes, brackets
/// and trailing punctuation around it kept).
pub fn redact_paths(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    for (i, word) in msg.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let edge = |c: char| "'\"`()[]{},;:.".contains(c);
        let core = word.trim_start_matches(edge);
        let lead = &word[..word.len() - core.len()];
        let core = core.trim_end_matches(edge);
        let trail = &word[lead.len() + core.len()..];
        if core.contains('/') || core.contains('\\') {
            out.push_str(lead);
            out.push_str("<path>");
            out.push_str(trail);
        } else {
            out.push_str(word);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact_paths;

    #[test]
    fn paths_go_names_stay() {
        assert_eq!(
            redact_paths("cannot read '/srv/models/digits_mlp/1/model.onnx': No such file"),
            "cannot read '<path>': No such file"
        );
        assert_eq!(
            redact_paths("model 'digits_mlp' has no version 7 (loaded: 1)"),
            "model 'digits_mlp' has no version 7 (loaded: 1)"
        );
        assert_eq!(redact_paths("at C:\\models\\x.onnx."), "at <path>.");
        assert_eq!(redact_paths("(repo/digits/config.pbtxt)"), "(<path>)");
    }
}
