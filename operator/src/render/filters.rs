//! Helm/Sprig-named tera filters for chart templates.
//!
//! tera filters take keyword arguments, so Sprig's positional `indent 4` becomes
//! `indent(n=4)`. Error messages never contain the filtered value: values may be secrets.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;
use sha2::Digest as _;
use tera::{Error, Result, Tera};

use super::limits;
use super::values::{from_yaml, type_name};

/// Registers the filters on `tera`, replacing tera's own `indent` and `int`.
pub(crate) fn register(tera: &mut Tera) {
    tera.register_filter("toYaml", to_yaml);
    tera.register_filter("toJson", to_json);
    tera.register_filter("fromYaml", from_yaml_filter);
    tera.register_filter("indent", indent);
    tera.register_filter("nindent", nindent);
    tera.register_filter("quote", quote);
    tera.register_filter("squote", squote);
    tera.register_filter("b64enc", b64enc);
    tera.register_filter("b64dec", b64dec);
    tera.register_filter("required", required);
    tera.register_filter("trunc", trunc);
    tera.register_filter("trimSuffix", trim_suffix);
    tera.register_filter("trimPrefix", trim_prefix);
    tera.register_filter("toString", to_string);
    tera.register_filter("int", int);
    tera.register_filter("sha256sum", sha256sum);
}

type Args = HashMap<String, Value>;

/// The text form of a value: strings as they are, `null` as `""`, others as compact JSON.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn str_arg<'a>(filter: &str, args: &'a Args, name: &str) -> Result<&'a str> {
    args.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| Error::msg(format!("`{filter}` needs a string argument `{name}`")))
}

fn int_arg(filter: &str, args: &Args, name: &str) -> Result<i64> {
    args.get(name)
        .and_then(Value::as_i64)
        .ok_or_else(|| Error::msg(format!("`{filter}` needs an integer argument `{name}`")))
}

/// `toYaml`: YAML without the trailing newline; `{}` and `[]` when empty.
fn to_yaml(value: &Value, _: &Args) -> Result<Value> {
    let yaml = serde_saphyr::to_string(value).map_err(|e| Error::msg(format!("toYaml: {e}")))?;
    Ok(Value::String(yaml.trim_end_matches('\n').to_owned()))
}

/// `toJson`: compact JSON.
fn to_json(value: &Value, _: &Args) -> Result<Value> {
    Ok(Value::String(value.to_string()))
}

/// `fromYaml`: parses a YAML string into a value.
fn from_yaml_filter(value: &Value, _: &Args) -> Result<Value> {
    let text =
        value.as_str().ok_or_else(|| Error::msg(format!("fromYaml needs a string, got {}", type_name(value))))?;
    from_yaml(text).map_err(|e| Error::msg(format!("fromYaml: {e}")))
}

/// `text` with every line prefixed by `n` spaces; `n` within 0..=[`limits::INDENT`] and the
/// result within [`limits::OUTPUT_BYTES`].
fn pad(filter: &str, text: &str, n: i64) -> Result<String> {
    let width = usize::try_from(n)
        .ok()
        .filter(|w| *w as i64 <= limits::INDENT)
        .ok_or_else(|| Error::msg(format!("`{filter}`: n={n} is not between 0 and {}", limits::INDENT)))?;
    let lines = text.matches('\n').count() + 1;
    if text.len().saturating_add(lines.saturating_mul(width)) > limits::OUTPUT_BYTES {
        return Err(Error::msg(format!("`{filter}`: the result would be over the output limit")));
    }
    let pad = " ".repeat(width);
    Ok(format!("{pad}{}", text.replace('\n', &format!("\n{pad}"))))
}

/// `indent(n=N)`: prefixes every line with N spaces.
fn indent(value: &Value, args: &Args) -> Result<Value> {
    Ok(Value::String(pad("indent", &text(value), int_arg("indent", args, "n")?)?))
}

/// `nindent(n=N)`: a newline, then `indent(n=N)`.
fn nindent(value: &Value, args: &Args) -> Result<Value> {
    let indented = pad("nindent", &text(value), int_arg("nindent", args, "n")?)?;
    Ok(Value::String(format!("\n{indented}")))
}

/// `quote`: a JSON-style double-quoted string (a valid YAML scalar).
fn quote(value: &Value, _: &Args) -> Result<Value> {
    Ok(Value::String(Value::String(text(value)).to_string()))
}

/// `squote`: a YAML single-quoted string (inner `'` doubled).
fn squote(value: &Value, _: &Args) -> Result<Value> {
    Ok(Value::String(format!("'{}'", text(value).replace('\'', "''"))))
}

/// `b64enc`: standard base64 of the text.
fn b64enc(value: &Value, _: &Args) -> Result<Value> {
    Ok(Value::String(BASE64.encode(text(value))))
}

/// `b64dec`: decodes standard base64 that holds UTF-8 text.
fn b64dec(value: &Value, _: &Args) -> Result<Value> {
    let bytes = BASE64.decode(text(value)).map_err(|_| Error::msg("b64dec: input is not valid base64"))?;
    String::from_utf8(bytes).map(Value::String).map_err(|_| Error::msg("b64dec: decoded bytes are not UTF-8 text"))
}

/// `required(msg=..)`: fails with `msg` when the value is `null` or `""`.
fn required(value: &Value, args: &Args) -> Result<Value> {
    let msg = str_arg("required", args, "msg")?;
    match value {
        Value::Null => Err(Error::msg(msg)),
        Value::String(s) if s.is_empty() => Err(Error::msg(msg)),
        other => Ok(other.clone()),
    }
}

/// `trunc(n=N)`: the first N characters, or the last -N when N is negative.
fn trunc(value: &Value, args: &Args) -> Result<Value> {
    let n = int_arg("trunc", args, "n")?;
    let chars: Vec<char> = text(value).chars().collect();
    let keep = usize::try_from(n.unsigned_abs()).unwrap_or(usize::MAX).min(chars.len());
    let kept = if n >= 0 { &chars[..keep] } else { &chars[chars.len() - keep..] };
    Ok(Value::String(kept.iter().collect()))
}

/// `trimSuffix(s=..)`: removes one trailing `s`, if present.
fn trim_suffix(value: &Value, args: &Args) -> Result<Value> {
    let suffix = str_arg("trimSuffix", args, "s")?;
    let text = text(value);
    Ok(Value::String(text.strip_suffix(suffix).unwrap_or(&text).to_owned()))
}

/// `trimPrefix(s=..)`: removes one leading `s`, if present.
fn trim_prefix(value: &Value, args: &Args) -> Result<Value> {
    let prefix = str_arg("trimPrefix", args, "s")?;
    let text = text(value);
    Ok(Value::String(text.strip_prefix(prefix).unwrap_or(&text).to_owned()))
}

/// `toString`: the text form of any value.
fn to_string(value: &Value, _: &Args) -> Result<Value> {
    Ok(Value::String(text(value)))
}

/// `int`: an integer from a number (truncated), a numeric string, a boolean or `null` (0).
fn int(value: &Value, _: &Args) -> Result<Value> {
    let n = match value {
        Value::Null => Some(0),
        Value::Bool(b) => Some(i64::from(*b)),
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    n.map(Value::from).ok_or_else(|| Error::msg(format!("int: cannot convert {} to an integer", type_name(value))))
}

/// `sha256sum`: lowercase hex SHA-256 of the text.
fn sha256sum(value: &Value, _: &Args) -> Result<Value> {
    let digest = sha2::Sha256::digest(text(value).as_bytes());
    Ok(Value::String(crate::hex::encode(&digest)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Renders a one-off template with the filters registered and `v` in the context.
    fn render(template: &str, v: Value) -> std::result::Result<String, String> {
        let mut tera = Tera::default();
        register(&mut tera);
        let mut ctx = tera::Context::new();
        ctx.insert("v", &v);
        tera.render_str(template, &ctx).map_err(|e| {
            let mut chain = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                chain = format!("{chain}: {s}");
                source = s.source();
            }
            chain
        })
    }

    #[test]
    fn to_yaml_has_no_trailing_newline() {
        let out = render("{{ v | toYaml }}", json!({"a": 1, "b": ["x", "z"]})).unwrap();
        assert_eq!(out, "a: 1\nb:\n- x\n- z");
        assert_eq!(render("{{ v | toYaml }}", json!({})).unwrap(), "{}");
        assert_eq!(render("{{ v | toYaml }}", json!([])).unwrap(), "[]");
        assert_eq!(render("{{ v | toYaml }}", json!("on")).unwrap(), "\"on\"");
    }

    #[test]
    fn to_yaml_nindent_makes_a_block() {
        let out = render("labels:{{ v | toYaml | nindent(n=2) }}", json!({"app": "web", "tier": "edge"})).unwrap();
        assert_eq!(out, "labels:\n  app: web\n  tier: edge");
    }

    #[test]
    fn to_json_is_compact() {
        let out = render("{{ v | toJson }}", json!({"a": [1, "b"]})).unwrap();
        assert_eq!(out, r#"{"a":[1,"b"]}"#);
    }

    #[test]
    fn from_yaml_parses_strings() {
        let out = render("{% set parsed = v | fromYaml %}{{ parsed.a.b }}", json!("a:\n  b: 7\n")).unwrap();
        assert_eq!(out, "7");
        let err = render("{{ v | fromYaml }}", json!(3)).unwrap_err();
        assert!(err.contains("fromYaml needs a string, got a number"), "{err}");
    }

    #[test]
    fn indent_indents_every_line() {
        assert_eq!(render("{{ v | indent(n=2) }}", json!("a\nb")).unwrap(), "  a\n  b");
        assert_eq!(render("{{ v | nindent(n=4) }}", json!("a\nb")).unwrap(), "\n    a\n    b");
        let err = render("{{ v | indent }}", json!("a")).unwrap_err();
        assert!(err.contains("`indent` needs an integer argument `n`"), "{err}");
    }

    #[test]
    fn quote_and_squote() {
        assert_eq!(render("{{ v | quote }}", json!("say \"hi\"")).unwrap(), r#""say \"hi\"""#);
        assert_eq!(render("{{ v | quote }}", json!(8080)).unwrap(), r#""8080""#);
        assert_eq!(render("{{ v | quote }}", json!(true)).unwrap(), r#""true""#);
        assert_eq!(render("{{ v | squote }}", json!("it's")).unwrap(), "'it''s'");
    }

    #[test]
    fn base64_round_trip() {
        assert_eq!(render("{{ v | b64enc }}", json!("hello")).unwrap(), "aGVsbG8=");
        assert_eq!(render("{{ v | b64dec }}", json!("aGVsbG8=")).unwrap(), "hello");
        let err = render("{{ v | b64dec }}", json!("s3cr3t!!!")).unwrap_err();
        assert!(err.contains("not valid base64") && !err.contains("s3cr3t"), "{err}");
    }

    #[test]
    fn required_rejects_null_and_empty() {
        assert_eq!(render("{{ v | required(msg='need v') }}", json!("x")).unwrap(), "x");
        assert_eq!(render("{{ v | required(msg='need v') }}", json!(0)).unwrap(), "0");
        for empty in [json!(null), json!("")] {
            let err = render("{{ v | required(msg='need v') }}", empty).unwrap_err();
            assert!(err.ends_with("need v"), "{err}");
        }
    }

    #[test]
    fn trunc_from_either_end() {
        assert_eq!(render("{{ v | trunc(n=3) }}", json!("abcdef")).unwrap(), "abc");
        assert_eq!(render("{{ v | trunc(n=-2) }}", json!("abcdef")).unwrap(), "ef");
        assert_eq!(render("{{ v | trunc(n=63) }}", json!("héllo")).unwrap(), "héllo");
    }

    #[test]
    fn trim_prefix_and_suffix() {
        assert_eq!(render("{{ v | trimSuffix(s='-') }}", json!("a-b-")).unwrap(), "a-b");
        assert_eq!(render("{{ v | trimPrefix(s='v') }}", json!("v1.2")).unwrap(), "1.2");
        assert_eq!(render("{{ v | trimPrefix(s='x') }}", json!("v1.2")).unwrap(), "v1.2");
    }

    #[test]
    fn to_string_and_int() {
        assert_eq!(render("{{ v | toString | quote }}", json!(1.5)).unwrap(), r#""1.5""#);
        assert_eq!(render("{{ v | int + 1 }}", json!(" 41 ")).unwrap(), "42");
        assert_eq!(render("{{ v | int }}", json!(3.9)).unwrap(), "3");
        assert_eq!(render("{{ v | int }}", json!(true)).unwrap(), "1");
        let err = render("{{ v | int }}", json!("12abc")).unwrap_err();
        assert!(err.contains("cannot convert a string") && !err.contains("12abc"), "{err}");
    }

    #[test]
    fn sha256sum_is_hex() {
        assert_eq!(
            render("{{ v | sha256sum }}", json!("abc")).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
