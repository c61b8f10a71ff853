//! AWS Bedrock Runtime (`bedrock-runtime.{region}.amazonaws.com`) failures.
//!
//! restJson1: the exception's name is in the `x-amzn-ErrorType` header
//! (`ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/`),
//! the body is only `{"message":…}`, the request id is `x-amzn-RequestId`.
//! No `Retry-After`: every wait is the caller's backoff.

use serde_json::json;

use super::MockFailure;
use crate::ErrorKind::{self, *};
use crate::Provider;

/// The request id every template carries in `x-amzn-RequestId`.
pub const REQUEST_ID: &str = "4f9d2c61-8a3b-4e7f-b0c5-1d2e3f4a5b6c";

fn exception(name: &str, exception: &str, status: u16, kind: ErrorKind, retryable: bool, message: &str) -> MockFailure {
    let error_type = format!("{exception}:http://internal.amazon.com/coral/com.amazon.bedrock/");
    MockFailure::new(name, Provider::Bedrock, status, kind, retryable)
        .json("application/json", &json!({"message": message}))
        .header("x-amzn-errortype", error_type)
        .request_id_in("x-amzn-requestid", REQUEST_ID)
        .claim_type(exception)
        .claim_message(message)
}

/// 429 `ThrottlingException` "Too many tokens, please wait before trying again."
pub fn throttling() -> MockFailure {
    exception(
        "bedrock::throttling",
        "ThrottlingException",
        429,
        RateLimited,
        true,
        "Too many tokens, please wait before trying again.",
    )
}

/// 429 `ModelNotReadyException`: the model is loading; the AWS SDKs retry it.
pub fn model_not_ready() -> MockFailure {
    let message = "Model is not ready to serve inference requests. The AWS SDK will automatically retry the operation.";
    exception("bedrock::model_not_ready", "ModelNotReadyException", 429, Overloaded, true, message)
}

/// 503 `ServiceUnavailableException` "Too many connections, please wait before trying again."
pub fn service_unavailable() -> MockFailure {
    let message = "Too many connections, please wait before trying again.";
    exception("bedrock::service_unavailable", "ServiceUnavailableException", 503, Overloaded, true, message)
}

/// 500 `InternalServerException`.
pub fn internal_server() -> MockFailure {
    let message = "The server encountered an internal error while processing the request.";
    exception("bedrock::internal_server", "InternalServerException", 500, ServerError, true, message)
}

/// 408 `ModelTimeoutException`.
pub fn model_timeout() -> MockFailure {
    exception(
        "bedrock::model_timeout",
        "ModelTimeoutException",
        408,
        Timeout,
        true,
        "The request took too long to process. Processing time exceeded the model timeout length.",
    )
}

/// 424 `ModelStreamErrorException`: the stream failed; retry the request.
pub fn model_stream_error() -> MockFailure {
    exception(
        "bedrock::model_stream_error",
        "ModelStreamErrorException",
        424,
        ServerError,
        true,
        "An error occurred while streaming the response. Retry your request.",
    )
}

/// 400 `ValidationException` with `message`.
pub fn validation(message: &str) -> MockFailure {
    exception("bedrock::validation", "ValidationException", 400, InvalidRequest, false, message)
}

/// 403 `AccessDeniedException`: no access to the model.
pub fn access_denied() -> MockFailure {
    exception(
        "bedrock::access_denied",
        "AccessDeniedException",
        403,
        PermissionDenied,
        false,
        "You don't have access to the model with the specified model ID.",
    )
}

/// Every template above.
pub(super) fn all() -> Vec<MockFailure> {
    vec![
        throttling(),
        model_not_ready(),
        service_unavailable(),
        internal_server(),
        model_timeout(),
        model_stream_error(),
        validation(
            "Malformed input request: #: required key [max_tokens] not found, please reformat your input and try again.",
        ),
        access_denied(),
    ]
}
