//! The OpenAPI 3.1 document, assembled from the handlers' `#[utoipa::path]` annotations
//! and the wire types' schemas, so it cannot drift from the code. It describes the
//! public listener; the operator listener's `/metrics` and detailed `/readyz` are in
//! docs/OPERATIONS.md.
//!
//! What holds for many operations is written once, here, as the code enforces it once:
//! [`conventions`] gives every operation that takes a `Caller` (everything under
//! `/export-center` but downloads and this document) the DPoP security requirement, the
//! tenant and project headers and their `400`/`401`/`403` answers; every error answer
//! the `application/problem+json` body of the problem layer; and every `GET` its `HEAD`,
//! which axum answers on every `GET` route.

use serde_json::{json, Value};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Export Center",
        description = "Deterministic, signed, verifiable exports of a tenant's security evidence.",
        version = "0.9.0"
    ),
    paths(
        crate::profiles::list_profiles,
        crate::profiles::create_profile,
        crate::profiles::get_profile,
        crate::profiles::update_profile,
        crate::profiles::delete_profile,
        crate::profiles::list_revisions,
        crate::runs::create_run,
        crate::runs::list_runs,
        crate::runs::get_run,
        crate::runs::cancel_run,
        crate::events::stream_run_events,
        crate::distributions::get_distribution,
        crate::artifacts::download_artifact,
        crate::webhooks::create_webhook,
        crate::webhooks::list_webhooks,
        crate::webhooks::get_webhook,
        crate::webhooks::delete_webhook,
        crate::webhooks::rotate_webhook_secret,
        crate::webhooks::list_deliveries,
        crate::service::openapi_json,
        crate::service::healthz,
        crate::service::readyz,
    ),
    components(schemas(
        export_api_types::CreateRunRequest,
        export_api_types::RunAccepted,
        export_api_types::RunStatusResponse,
        export_api_types::RunList,
        export_api_types::ProfileList,
        export_api_types::ProfileDefinitionBody,
        export_api_types::ProfileRevisionList,
        export_api_types::Problem,
        export_api_types::DistributionResponse,
        export_api_types::ReadinessStatus,
        export_api_types::NotificationBody,
    ))
)]
struct ApiDoc;

/// The document as pretty-printed JSON.
pub fn openapi_document() -> String {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serializes");
    conventions(&mut doc);
    serde_json::to_string_pretty(&doc).expect("the OpenAPI document serializes")
}

const PROBLEM: &str = "#/components/schemas/Problem";

/// Applies the conventions of the module comment. It works on the JSON form because
/// utoipa's `HttpAuthScheme` has no `DPoP` (RFC 9449 §7.1 registers it).
fn conventions(doc: &mut Value) {
    let components = &mut doc["components"];
    components["securitySchemes"] = security_schemes();
    components["parameters"] = json!({
        "Tenant": {
            "name": "X-StellaOps-Tenant",
            "in": "header",
            "required": true,
            "description": "The caller's tenant; must be the access token's (`X-Stella-Tenant` is a legacy alias).",
            "schema": { "type": "string", "pattern": "^[a-z0-9-]{1,64}$" }
        },
        "Project": {
            "name": "X-StellaOps-Project",
            "in": "header",
            "required": false,
            "description": "Narrows what the caller sees to the runs created with this project.",
            "schema": { "type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$" }
        }
    });
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for operation in item.values_mut() {
            if takes_caller(path) {
                authenticated(operation);
            }
            problem_bodies(operation);
        }
        if let Some(get) = item.get("get") {
            let head = head_of(get);
            item.insert("head".to_owned(), head);
        }
    }
}

/// `Authorization: DPoP <token>` with its `DPoP` proof (SPEC §3); the scopes each
/// operation needs are in its description (`export:read` for `GET`, `export:write` for
/// runs' `POST`, `export:admin` for managing profiles and webhooks).
fn security_schemes() -> Value {
    json!({
        "dpop": {
            "type": "http",
            "scheme": "DPoP",
            "description": "A DPoP-bound access token (RFC 9449) of the configured issuer, with `export:read` for GET and HEAD, `export:write` to create and cancel runs, `export:admin` to create, change and archive profiles and to create, delete or rotate webhooks."
        },
        "dpopProof": {
            "type": "apiKey",
            "in": "header",
            "name": "DPoP",
            "description": "A fresh DPoP proof for this request, bound to its method, URL and access token."
        }
    })
}

/// Whether the operations at `path` authenticate their caller (`Caller` extractor).
fn takes_caller(path: &str) -> bool {
    path.starts_with("/export-center/")
        && !path.starts_with("/export-center/artifacts/")
        && path != "/export-center/openapi.json"
}

fn authenticated(operation: &mut Value) {
    operation["security"] = json!([{ "dpop": [], "dpopProof": [] }]);
    let parameters = operation
        .as_object_mut()
        .map(|operation| operation.entry("parameters").or_insert_with(|| json!([])));
    if let Some(Value::Array(parameters)) = parameters {
        parameters.push(json!({ "$ref": "#/components/parameters/Tenant" }));
        parameters.push(json!({ "$ref": "#/components/parameters/Project" }));
    }
    let responses = &mut operation["responses"];
    for (status, description) in [
        (
            "400",
            "The tenant or project header is missing or malformed, or the request is invalid",
        ),
        (
            "403",
            "The tenant header names another tenant than the token, or the token lacks the scope",
        ),
    ] {
        if responses.get(status).is_none() {
            responses[status] = json!({ "description": description });
        }
    }
    responses["401"] = json!({
        "description": "The access token or its DPoP proof is missing or invalid, or a server nonce is required",
        "headers": {
            "WWW-Authenticate": {
                "description": "`DPoP error=\"invalid_token\"`, `\"invalid_dpop_proof\"` or `\"use_dpop_nonce\"`, with `algs`",
                "required": true,
                "schema": { "type": "string" }
            },
            "DPoP-Nonce": {
                "description": "The nonce to put in the next proof, with `use_dpop_nonce`",
                "schema": { "type": "string" }
            }
        }
    });
}

/// Every error answer is an RFC 9457 problem (`problem_layer.rs`); an answer that
/// documents another body (`/readyz`'s `503`) keeps it.
fn problem_bodies(operation: &mut Value) {
    let Some(responses) = operation["responses"].as_object_mut() else {
        return;
    };
    for (status, response) in responses.iter_mut() {
        if !status.starts_with('4') && !status.starts_with('5') {
            continue;
        }
        let content = &response["content"];
        let problem_or_none = content
            .as_object()
            .is_none_or(|content| content.values().all(|media| media["schema"]["$ref"] == PROBLEM));
        if problem_or_none {
            response["content"] = json!({
                "application/problem+json": { "schema": { "$ref": PROBLEM } }
            });
        }
    }
}

/// The `HEAD` of a `GET`: the same parameters, statuses and headers, no bodies.
fn head_of(get: &Value) -> Value {
    let mut head = get.clone();
    if let Some(id) = head["operationId"].as_str() {
        head["operationId"] = Value::String(format!("{id}_head"));
    }
    if let Some(responses) = head["responses"].as_object_mut() {
        for response in responses.values_mut() {
            if let Some(response) = response.as_object_mut() {
                response.remove("content");
            }
        }
    }
    if let Some(summary) = head["summary"].as_str() {
        head["summary"] = Value::String(format!("{summary} (headers only)"));
    }
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document() -> Value {
        serde_json::from_str(&openapi_document()).unwrap()
    }

    fn operations(doc: &Value) -> Vec<(String, String, Value)> {
        let mut found = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                found.push((path.clone(), method.clone(), operation.clone()));
            }
        }
        found
    }

    #[test]
    fn every_operation_that_authenticates_says_how_and_what_it_answers() {
        let doc = document();
        assert_eq!(doc["components"]["securitySchemes"]["dpop"]["scheme"], "DPoP");
        assert_eq!(doc["components"]["securitySchemes"]["dpopProof"]["name"], "DPoP");
        let mut secured = 0;
        for (path, method, operation) in operations(&doc) {
            let parameters = operation["parameters"].to_string();
            if !takes_caller(&path) {
                assert!(operation.get("security").is_none(), "{method} {path}");
                continue;
            }
            secured += 1;
            assert_eq!(
                operation["security"],
                json!([{ "dpop": [], "dpopProof": [] }]),
                "{method} {path}"
            );
            assert!(
                parameters.contains("#/components/parameters/Tenant"),
                "{method} {path}"
            );
            for status in ["400", "401", "403"] {
                assert!(
                    operation["responses"].get(status).is_some(),
                    "{method} {path} {status}"
                );
            }
        }
        assert_eq!(secured, 28, "10 GET, their 10 HEAD, 5 POST, a PUT and 2 DELETE");
    }

    #[test]
    fn every_error_answer_is_a_problem_and_every_get_has_its_head() {
        let doc = document();
        for (path, method, operation) in operations(&doc) {
            for (status, response) in operation["responses"].as_object().unwrap() {
                let error = status.starts_with('4') || status.starts_with('5');
                if method == "head" {
                    assert!(
                        response.get("content").is_none(),
                        "HEAD {path} {status} has no body"
                    );
                } else if error && !(path == "/readyz" && status == "503") {
                    assert_eq!(
                        response["content"]["application/problem+json"]["schema"]["$ref"], PROBLEM,
                        "{method} {path} {status}"
                    );
                }
            }
            if method == "get" {
                let head = &doc["paths"][&path]["head"];
                assert!(head.is_object(), "HEAD {path}");
                assert_ne!(head["operationId"], operation["operationId"], "{path}");
            }
        }
    }
}
