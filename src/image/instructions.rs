//! The `-c` instructions of `commit` (Docker's `--change`): CMD, ENTRYPOINT, ENV, WORKDIR,
//! USER, LABEL, EXPOSE and VOLUME, applied to the `config` object of an image config.

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};

/// A JSON array of strings (`["a", "b"]`), or None when the text is not one.
fn json_list(s: &str) -> Option<Vec<String>> {
    if !s.trim_start().starts_with('[') {
        return None;
    }
    serde_json::from_str(s).ok()
}

/// Exec form as given, or the shell form as `/bin/sh -c TEXT`.
fn command(s: &str) -> Vec<String> {
    json_list(s).unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into(), s.to_string()])
}

/// `K=V K2="V 2"` pairs, or Docker's older `K V` form (one pair, the rest the value).
fn pairs(s: &str) -> Result<Vec<(String, String)>> {
    let words = shell_words(s)?;
    if words.first().is_some_and(|w| !w.contains('=')) {
        let (k, v) = s
            .trim()
            .split_once(char::is_whitespace)
            .unwrap_or((s.trim(), ""));
        return Ok(vec![(k.to_string(), v.trim().to_string())]);
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("{w:?}: expected KEY=VALUE"),
        })
        .collect()
}

/// Words split at blanks, with "double" and 'single' quotes and backslash escapes.
fn shell_words(s: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut any = false;
    let mut quote: Option<char> = None;
    let mut it = s.chars();
    while let Some(c) = it.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                any = true;
            }
            (Some(q), c) if c == q => quote = None,
            (q, '\\') if q != Some('\'') => {
                if let Some(n) = it.next() {
                    cur.push(n);
                }
                any = true;
            }
            (_, c) => {
                cur.push(c);
                any = true;
            }
        }
    }
    if quote.is_some() {
        bail!("unterminated quote in {s:?}");
    }
    if any {
        out.push(cur);
    }
    Ok(out)
}

fn obj<'a>(cfg: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let v = cfg.entry(key.to_string()).or_insert_with(|| json!({}));
    if !v.is_object() {
        *v = json!({});
    }
    v.as_object_mut().expect("an object")
}

/// Apply one instruction to an image config's `config` object.
pub fn apply(cfg: &mut Map<String, Value>, instruction: &str) -> Result<()> {
    let t = instruction.trim();
    let (word, rest) = t.split_once(char::is_whitespace).unwrap_or((t, ""));
    let rest = rest.trim();
    let what = || format!("-c {instruction:?}");
    match word.to_ascii_uppercase().as_str() {
        "CMD" => {
            cfg.insert("Cmd".into(), json!(command(rest)));
        }
        "ENTRYPOINT" => {
            cfg.insert("Entrypoint".into(), json!(command(rest)));
        }
        "ENV" => {
            let env = cfg.entry("Env").or_insert_with(|| json!([]));
            if !env.is_array() {
                *env = json!([]);
            }
            let list = env.as_array_mut().expect("an array");
            for (k, v) in pairs(rest).with_context(what)? {
                list.retain(|e| {
                    e.as_str()
                        .is_none_or(|e| e.split_once('=').map_or(e, |(ek, _)| ek) != k)
                });
                list.push(json!(format!("{k}={v}")));
            }
        }
        "WORKDIR" if !rest.is_empty() => {
            cfg.insert("WorkingDir".into(), json!(rest));
        }
        "USER" if !rest.is_empty() => {
            cfg.insert("User".into(), json!(rest));
        }
        "LABEL" => {
            let pairs = pairs(rest).with_context(what)?;
            let labels = obj(cfg, "Labels");
            for (k, v) in pairs {
                labels.insert(k, json!(v));
            }
        }
        "EXPOSE" => {
            let ports = obj(cfg, "ExposedPorts");
            for p in rest.split_whitespace() {
                let p = if p.contains('/') {
                    p.to_string()
                } else {
                    format!("{p}/tcp")
                };
                ports.insert(p, json!({}));
            }
        }
        "VOLUME" => {
            let list = match json_list(rest) {
                Some(l) => l,
                None => shell_words(rest).with_context(what)?,
            };
            let vols = obj(cfg, "Volumes");
            for v in list {
                vols.insert(v, json!({}));
            }
        }
        "" => bail!("-c: an empty instruction"),
        _ => bail!(
            "{}: not a valid change command (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, VOLUME, WORKDIR)",
            word
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockers_change_instructions_are_applied() {
        let mut c = Map::new();
        c.insert("Env".into(), json!(["PATH=/bin", "A=1"]));
        for i in [
            r#"CMD ["sh", "-c", "echo hi"]"#,
            "ENTRYPOINT /init --x",
            "ENV A=2 B=\"two words\"",
            "ENV C three four",
            "WORKDIR /srv",
            "USER 1000:1000",
            "LABEL k=v other=\"x y\"",
            "EXPOSE 80 53/udp",
            "VOLUME /data /logs",
        ] {
            apply(&mut c, i).unwrap();
        }
        assert_eq!(c["Cmd"], json!(["sh", "-c", "echo hi"]));
        assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-c", "/init --x"]));
        assert_eq!(
            c["Env"],
            json!(["PATH=/bin", "A=2", "B=two words", "C=three four"])
        );
        assert_eq!(c["WorkingDir"], "/srv");
        assert_eq!(c["User"], "1000:1000");
        assert_eq!(c["Labels"], json!({"k": "v", "other": "x y"}));
        assert_eq!(c["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        assert_eq!(c["Volumes"], json!({"/data": {}, "/logs": {}}));
        assert!(apply(&mut c, "RUN rm -rf /").is_err());
        assert!(apply(&mut c, "ENV A=\"open").is_err());
    }
}
