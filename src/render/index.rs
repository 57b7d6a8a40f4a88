//! `index.html` for an output folder: the run's pictures with a line saying what each shows,
//! and its settings from `run.json`, in one static page that needs no server.

use std::path::Path;

use crate::error::Result;
use crate::io::fs;

/// A picture on the page and what it shows.
pub struct Picture<'a> {
    pub file: &'a str,
    pub caption: &'a str,
}

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A setting's value as the table shows it: long lists are summarised.
fn show(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(a) if a.len() > 12 => format!("{} values", a.len()),
        other => other.to_string(),
    }
}

/// A page title: the command, and the prompt when there is one (`diffuse generate: "a cat"`).
pub fn title_with_prompt(command: &str, prompt: &str) -> String {
    match prompt.trim() {
        "" => format!("diffuse {command}"),
        p => format!("diffuse {command}: \"{p}\""),
    }
}

/// Writes `out/index.html` (atomically): `title`, the one-paragraph `intro`, the pictures
/// that exist in `out`, and every top-level setting of `report` (a run's `run.json`).
pub fn write_index<R: serde::Serialize>(
    out: &Path,
    title: &str,
    intro: &str,
    pictures: &[Picture],
    report: &R,
) -> Result<()> {
    let mut html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{t}</title><style>body{{font-family:sans-serif;max-width:70em;margin:1em auto;padding:0 1em}}\
img{{max-width:100%;image-rendering:pixelated}}figure{{margin:1em 0}}\
table{{table-layout:fixed;width:100%;border-collapse:collapse}}td:first-child{{width:12em}}\
td{{padding:.1em .8em;vertical-align:top;font-family:monospace;overflow-wrap:anywhere}}</style></head><body>\n\
<h1>{t}</h1>\n<p>{i}</p>\n",
        t = escape(title),
        i = escape(intro)
    );
    for p in pictures.iter().filter(|p| out.join(p.file).exists()) {
        html.push_str(&format!(
            "<figure><img src=\"{f}\" alt=\"{c}\"><figcaption><b>{f}</b>: {c}</figcaption></figure>\n",
            f = escape(p.file),
            c = escape(p.caption)
        ));
    }
    html.push_str("<h2>Settings (run.json)</h2>\n<table>\n");
    if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(report) {
        for (key, value) in &map {
            let row = format!(
                "<tr><td>{}</td><td>{}</td></tr>\n",
                escape(key),
                escape(&show(value))
            );
            html.push_str(&row);
        }
    }
    html.push_str("</table>\n</body></html>\n");
    fs::write_atomic(&out.join("index.html"), html.as_bytes())
}
