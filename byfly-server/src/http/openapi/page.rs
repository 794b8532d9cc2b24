//! `GET /api/docs`: the document rendered by the server as one HTML page — operations by tag,
//! their parameters, bodies and answers (with the error codes), the webhooks, and the schemas.
//! No script and no CDN (an integrator's browser may reach nothing but this server); the page's
//! one style sheet is allowed by its hash in the CSP.

use std::fmt::Write;

use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa::openapi::OpenApi as Document;

use crate::http::page::escape;

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:1rem;color:#1d1d1f}\
h1{font-size:1.6rem}h2{margin-top:2.5rem;border-bottom:1px solid #ddd}h3{font-size:1.05rem;margin:1.6rem 0 .3rem}\
code,.m{font-family:ui-monospace,monospace;font-size:.9em}.m{display:inline-block;min-width:4.2em;font-weight:700}\
.get{color:#0a7a32}.post{color:#9a5b00}.patch{color:#5b3cc4}table{border-collapse:collapse;width:100%;margin:.3rem 0}\
td,th{border:1px solid #e3e3e3;padding:.25rem .5rem;text-align:left;vertical-align:top}th{background:#f6f6f6}\
nav a{margin-right:.8rem}p{margin:.3rem 0}@media(max-width:600px){table{font-size:.85em}}";

/// The `Content-Security-Policy` of the page: nothing but its own style sheet.
pub fn content_security_policy() -> String {
    let digest = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, Sha256::digest(STYLE));
    format!(
        "default-src 'none'; style-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

/// A schema in a few words: its `$ref` name, type, format and constraints.
fn schema_words(schema: &Value) -> String {
    if let Some(name) = schema["$ref"].as_str() {
        let name = name.rsplit('/').next().unwrap_or(name);
        return format!("<a href=\"#schema-{0}\">{0}</a>", escape(name));
    }
    if let Some(items) = schema.get("items") {
        return format!("array of {}", schema_words(items));
    }
    let mut words = match &schema["type"] {
        Value::String(kind) => kind.clone(),
        Value::Array(kinds) => kinds
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" or "),
        _ => ["oneOf", "allOf", "anyOf"]
            .iter()
            .find_map(|key| schema[*key].as_array())
            .map(|options| options.iter().map(schema_words).collect::<Vec<_>>().join(" | "))
            .unwrap_or_else(|| "any".to_owned()),
    };
    for key in [
        "format",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "pattern",
    ] {
        if let Some(value) = schema.get(key) {
            let _ = write!(words, ", {key} {}", escape(&value.to_string()));
        }
    }
    if let Some(values) = schema["enum"].as_array() {
        let values: Vec<String> = values.iter().map(|v| escape(&v.to_string())).collect();
        let _ = write!(words, ": {}", values.join(", "));
    }
    words
}

fn operation(html: &mut String, method: &str, path: &str, op: &Value) {
    let _ = write!(
        html,
        "<h3 id=\"{id}\"><span class=\"m {method}\">{upper}</span> <code>{path}</code></h3><p>{summary}</p>",
        id = escape(op["operationId"].as_str().unwrap_or("")),
        upper = method.to_uppercase(),
        path = escape(path),
        summary = escape(op["summary"].as_str().unwrap_or("")),
    );
    if let Some(description) = op["description"].as_str() {
        let _ = write!(html, "<p>{}</p>", escape(description));
    }
    if let Some(security) = op["security"]
        .as_array()
        .and_then(|s| s.first())
        .and_then(Value::as_object)
    {
        let names: Vec<&str> = security.keys().map(String::as_str).collect();
        let _ = write!(html, "<p>Auth: <code>{}</code></p>", names.join(", "));
    }
    if let Some(parameters) = op["parameters"].as_array() {
        html.push_str("<table><tr><th>parameter</th><th>in</th><th>schema</th><th>description</th></tr>");
        for p in parameters {
            let _ = write!(
                html,
                "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(p["name"].as_str().unwrap_or("")),
                if p["required"] == Value::Bool(true) {
                    " *"
                } else {
                    ""
                },
                escape(p["in"].as_str().unwrap_or("")),
                schema_words(&p["schema"]),
                escape(p["description"].as_str().unwrap_or("")),
            );
        }
        html.push_str("</table>");
    }
    if let Some(content) = op["requestBody"]["content"].as_object() {
        for (kind, body) in content {
            let _ = write!(
                html,
                "<p>Body ({}): {}</p>",
                escape(kind),
                schema_words(&body["schema"])
            );
        }
    }
    if let Some(responses) = op["responses"].as_object() {
        html.push_str("<table><tr><th>answer</th><th>body</th><th>description</th></tr>");
        for (status, response) in responses {
            let body = response["content"]
                .as_object()
                .and_then(|content| content.values().next())
                .map(|media| schema_words(&media["schema"]))
                .unwrap_or_default();
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(status),
                body,
                escape(response["description"].as_str().unwrap_or("")),
            );
        }
        html.push_str("</table>");
    }
}

/// The whole page.
pub fn render(document: &Document) -> String {
    let doc = serde_json::to_value(document).unwrap_or(Value::Null);
    let title = escape(doc["info"]["title"].as_str().unwrap_or("API"));
    let mut html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width,initial-scale=1\"><title>{title}</title><style>{STYLE}</style></head><body>\
         <h1>{title} <small>{version}</small></h1><p>{description}</p>\
         <p>The machine-readable document: <a href=\"openapi.json\"><code>/api/openapi.json</code></a>.</p><nav>",
        version = escape(doc["info"]["version"].as_str().unwrap_or("")),
        description = escape(doc["info"]["description"].as_str().unwrap_or("")),
    );
    let tags: Vec<(String, String)> = doc["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|tag| {
            let name = tag["name"].as_str().unwrap_or("").to_owned();
            (name, tag["description"].as_str().unwrap_or("").to_owned())
        })
        .collect();
    for (index, (name, _)) in tags.iter().enumerate() {
        let _ = write!(html, "<a href=\"#tag-{index}\">{}</a>", escape(name));
    }
    html.push_str("<a href=\"#webhooks\">webhooks</a><a href=\"#schemas\">schemas</a></nav>");
    let paths = doc["paths"].as_object().cloned().unwrap_or_default();
    for (index, (tag, description)) in tags.iter().enumerate() {
        let _ = write!(
            html,
            "<h2 id=\"tag-{index}\">{}</h2><p>{}</p>",
            escape(tag),
            escape(description)
        );
        for (path, item) in &paths {
            for (method, op) in item.as_object().into_iter().flatten() {
                let tagged = op["tags"]
                    .as_array()
                    .is_some_and(|t| t.first() == Some(&Value::from(tag.as_str())));
                if tagged {
                    operation(&mut html, method, path, op);
                }
            }
        }
    }
    html.push_str("<h2 id=\"webhooks\">webhooks</h2><p>What the server sends to a payment's <code>webhook_url</code>.</p>");
    for (name, item) in doc["webhooks"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            operation(&mut html, method, &format!("{{webhook_url}} ({name})"), op);
        }
    }
    html.push_str("<h2 id=\"schemas\">schemas</h2>");
    for (name, schema) in doc["components"]["schemas"].as_object().into_iter().flatten() {
        let _ = write!(html, "<h3 id=\"schema-{0}\">{0}</h3>", escape(name));
        if let Some(description) = schema["description"].as_str() {
            let _ = write!(html, "<p>{}</p>", escape(description));
        }
        let required: Vec<&str> = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        match schema["properties"].as_object() {
            Some(properties) => {
                html.push_str("<table><tr><th>field</th><th>schema</th><th>description</th></tr>");
                for (field, property) in properties {
                    let _ = write!(
                        html,
                        "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td></tr>",
                        escape(field),
                        if required.contains(&field.as_str()) {
                            " *"
                        } else {
                            ""
                        },
                        schema_words(property),
                        escape(property["description"].as_str().unwrap_or("")),
                    );
                }
                html.push_str("</table>");
            }
            None => {
                let _ = write!(html, "<p>{}</p>", schema_words(schema));
            }
        }
    }
    html.push_str("<p>* required</p></body></html>");
    html
}
