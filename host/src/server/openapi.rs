//! `GET /admin/v1/openapi.json`: the admin API as an OpenAPI 3.1 document,
//! built from the route table the router admits requests by and from the
//! request types its handlers read.

use std::sync::LazyLock;

use utoipa::ToSchema;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Ref, Required,
    ResponseBuilder,
};

use super::routes::{self, Caller, Input};

/// Every error answer's body.
#[derive(ToSchema)]
#[allow(dead_code)] // Described, never built: errors are written by `respond::error`.
pub struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong, and what to do about it.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorDetail {
    /// A stable, machine-readable code, e.g. `not_found`, `quota_exceeded`.
    code: String,
    /// A sentence for people.
    message: String,
}

/// The document, built once.
pub static DOCUMENT: LazyLock<serde_json::Value> =
    LazyLock::new(|| serde_json::to_value(build()).unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() })));

fn method(method: &http::Method) -> HttpMethod {
    match *method {
        http::Method::GET => HttpMethod::Get,
        http::Method::PUT => HttpMethod::Put,
        http::Method::DELETE => HttpMethod::Delete,
        http::Method::PATCH => HttpMethod::Patch,
        _ => HttpMethod::Post,
    }
}

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn json_response(description: &str, schema: Option<&str>) -> utoipa::openapi::Response {
    let content = match schema {
        Some(name) => ContentBuilder::new().schema(Some(Ref::from_schema_name(name))),
        None => ContentBuilder::new().schema(Some(ObjectBuilder::new().schema_type(Type::Object))),
    };
    ResponseBuilder::new()
        .description(description)
        .content("application/json", content.build())
        .build()
}

fn build() -> OpenApi {
    let mut paths = PathsBuilder::new();
    for route in routes::ADMIN {
        let who = match route.caller {
            Caller::Anyone => "Anyone, without credentials.",
            Caller::Operator => "The operator key.",
            Caller::AnyKey => "Any valid key.",
            Caller::Owner => "The operator key, or a key of the account in the path.",
        };
        let mut operation = OperationBuilder::new()
            .summary(Some(route.summary))
            .description(Some(who))
            .operation_id(Some(format!("{} {}", route.method, route.path)));
        let path_parameters = route
            .path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| (name, None, ParameterIn::Path));
        let optional = |location: ParameterIn| {
            move |(name, description): &(&'static str, &'static str)| (*name, Some(*description), location.clone())
        };
        let parameters = path_parameters
            .chain(route.query.iter().map(optional(ParameterIn::Query)))
            .chain(route.headers.iter().map(optional(ParameterIn::Header)));
        for (name, description, location) in parameters {
            let required = if location == ParameterIn::Path {
                Required::True
            } else {
                Required::False
            };
            operation = operation.parameter(
                ParameterBuilder::new()
                    .name(name)
                    .parameter_in(location)
                    .required(required)
                    .description(description)
                    .schema(Some(string())),
            );
        }
        match route.input {
            Input::None => {}
            Input::Json(schema) => {
                operation = operation.request_body(Some(
                    RequestBodyBuilder::new()
                        .required(Some(Required::True))
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name(schema)))
                                .build(),
                        )
                        .build(),
                ));
            }
            Input::Bytes => {
                operation = operation.request_body(Some(
                    RequestBodyBuilder::new()
                        .required(Some(Required::True))
                        .description(Some("The component's bytes; their SHA-256 must be the path's."))
                        .content(
                            "application/wasm",
                            ContentBuilder::new()
                                .schema(Some(
                                    string().format(Some(utoipa::openapi::SchemaFormat::Custom("binary".into()))),
                                ))
                                .build(),
                        )
                        .build(),
                ));
            }
        }
        operation = if route.ok == 204 {
            operation.response("204", ResponseBuilder::new().description("Done; no body.").build())
        } else {
            operation.response(route.ok.to_string(), json_response("Success.", None))
        };
        if route.upsert {
            operation = operation.response("201", json_response("Created.", None));
        }
        if route.caller != Caller::Anyone {
            operation = operation
                .security(SecurityRequirement::new("bearer", Vec::<String>::new()))
                .response("401", json_response("No key, or not a valid one.", Some("ErrorBody")));
        }
        if route.caller == Caller::Operator || route.caller == Caller::Owner {
            operation = operation.response("403", json_response("The key may not do this.", Some("ErrorBody")));
        }
        operation = operation.response(
            "default",
            json_response(
                "An error; SPEC §5 lists the codes and their statuses.",
                Some("ErrorBody"),
            ),
        );
        paths = paths.path(
            format!("/admin/v1{}", route.path),
            PathItem::new(method(&route.method), operation.build()),
        );
    }

    use stratus_wire::admin::{
        CreateAccount, Deploy, IssueSubTenantToken, PutAlias, PutCrossAlias, PutGrant, PutReservation,
    };
    let components = ComponentsBuilder::new()
        .schema_from::<ErrorBody>()
        .schema_from::<ErrorDetail>()
        .schema_from::<CreateAccount>()
        .schema_from::<IssueSubTenantToken>()
        .schema_from::<Deploy>()
        .schema_from::<PutAlias>()
        .schema_from::<PutGrant>()
        .schema_from::<PutReservation>()
        .schema_from::<PutCrossAlias>()
        .schema_from::<crate::registry::records::Tenancy>()
        .schema_from::<crate::registry::records::Reuse>()
        .schema_from::<crate::registry::records::Weight>()
        .schema_from::<crate::registry::records::Overrides>()
        .schema_from::<crate::registry::records::LowerLimits>()
        .security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)))
        .build();

    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Stratus admin API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Accounts, keys, components, versions, aliases, grants, cross-account aliases, \
                     reservations and logs. Keys are sent as `Authorization: Bearer KEY`.",
                )),
        )
        .paths(paths.build())
        .components(Some(components))
        .build()
}
