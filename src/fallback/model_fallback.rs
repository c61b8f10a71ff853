//! What a caller is told when its request went to a fallback model.

use std::fmt;

use super::table::Chain;
use crate::error::LlmApiError;

/// The response (or error) came from a fallback model: which model the
/// request named, which one this is from, and why the request left the first.
///
/// On every response the middleware sent to a fallback, success or failure,
/// read with [`LlmResponseExt::model_fallback`](crate::LlmResponseExt::model_fallback);
/// a response without it came from the model the request named. When the
/// fallback failed too, the error attached is the fallback's, and
/// [`LlmApiError::fallback`] leads here to the requested model's own last
/// error, also when [`error_for_status`](crate::LlmRetryMiddlewareBuilder::error_for_status)
/// returned the error alone.
///
/// ```
/// use reqwest_llm_retry::LlmResponseExt;
/// # fn demo(response: reqwest::Response) {
/// if let Some(fallback) = response.model_fallback() {
///     eprintln!("{} answered instead of {}", fallback.answered, fallback.requested);
///     if let Some(error) = &fallback.primary_error {
///         eprintln!("{} failed: {error}", fallback.requested);
///     }
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ModelFallback {
    /// The model the request named.
    pub requested: String,
    /// The model this response or error is from: the last one tried.
    pub answered: String,
    /// Every model the request was sent to, in order: `requested` first,
    /// `answered` last, the models of a chain in between.
    pub tried: Vec<String>,
    /// The last error of the requested model, which sent the request on;
    /// `None` when that was a timeout, with no response to parse.
    pub primary_error: Option<LlmApiError>,
}

impl ModelFallback {
    /// Where `chain` stands, with the requested model's last error.
    pub(crate) fn of(chain: &Chain<'_>, primary_error: Option<LlmApiError>) -> ModelFallback {
        ModelFallback {
            requested: chain.requested().to_owned(),
            answered: chain.current().to_owned(),
            tried: chain.tried().iter().map(|model| (*model).to_owned()).collect(),
            primary_error,
        }
    }
}

/// `fell back from claude-opus-4 (overloaded) to claude-sonnet-4`, the
/// models of a chain joined by `→`.
impl fmt::Display for ModelFallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fell back from {}", self.requested)?;
        let why = self.primary_error.as_ref().map_or("timeout", |error| error.kind.name());
        write!(f, " ({why}) to ")?;
        let onward = self.tried.get(1..).unwrap_or_default();
        if onward.is_empty() {
            return f.write_str(&self.answered);
        }
        f.write_str(&onward.join(" → "))
    }
}

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::*;
    use crate::LlmResponseExt;
    use crate::fallback::Fallbacks;
    use crate::kind::ErrorKind;
    use crate::provider::Provider;

    /// The chain of `pairs` from `requested`, walked `steps` times.
    fn walked(pairs: &[(&str, &str)], requested: &str, steps: usize, primary: Option<LlmApiError>) -> ModelFallback {
        let mut table = Fallbacks::default();
        for &(from, to) in pairs {
            table.insert(from.into(), to.into());
        }
        let mut chain = Chain::start(&table, requested).unwrap();
        for _ in 0..steps {
            chain.advance().unwrap();
        }
        ModelFallback::of(&chain, primary)
    }

    fn overloaded() -> LlmApiError {
        LlmApiError::from_status(Provider::Anthropic, StatusCode::from_u16(529).unwrap())
    }

    #[test]
    fn it_names_the_requested_and_answering_models_and_why() {
        let fallback = walked(&[("opus", "sonnet")], "opus", 1, Some(overloaded()));
        assert_eq!((fallback.requested.as_str(), fallback.answered.as_str()), ("opus", "sonnet"));
        assert_eq!(fallback.tried, ["opus", "sonnet"]);
        assert_eq!(fallback.primary_error.as_ref().map(|e| e.kind), Some(ErrorKind::Overloaded));
        assert_eq!(fallback.to_string(), "fell back from opus (overloaded) to sonnet");

        let chain = walked(&[("opus", "sonnet"), ("sonnet", "haiku")], "opus", 2, Some(overloaded()));
        assert_eq!((chain.requested.as_str(), chain.answered.as_str()), ("opus", "haiku"));
        assert_eq!(chain.to_string(), "fell back from opus (overloaded) to sonnet → haiku");

        let timed_out = walked(&[("opus", "sonnet")], "opus", 1, None);
        assert_eq!(timed_out.to_string(), "fell back from opus (timeout) to sonnet");
    }

    #[test]
    fn the_fallbacks_error_leads_to_the_requested_models_error() {
        let fallback = walked(&[("opus", "sonnet")], "opus", 1, Some(overloaded()));
        let mut error = LlmApiError::from_status(Provider::Anthropic, StatusCode::INTERNAL_SERVER_ERROR);
        let plain = error.clone();
        assert_eq!(error.fallback(), None);
        error.set_fallback(fallback.clone());
        assert_eq!(error.fallback(), Some(&fallback));
        assert_eq!(error.fallback().and_then(|f| f.primary_error.as_ref()).map(|e| e.status.as_u16()), Some(529));
        assert_ne!(error, plain, "the fallback is part of the error");
        assert_eq!(
            error.to_string(),
            format!("{plain} (fell back from opus (overloaded) to sonnet)"),
            "Display says which model failed last"
        );
    }

    #[test]
    fn a_response_carries_it_in_its_extensions() {
        let fallback = walked(&[("opus", "sonnet")], "opus", 1, Some(overloaded()));
        let response: reqwest::Response =
            http::Response::builder().extension(fallback.clone()).body("answer").unwrap().into();
        assert_eq!(response.model_fallback(), Some(&fallback));
        let plain: reqwest::Response = http::Response::new("answer").into();
        assert_eq!(plain.model_fallback(), None);
    }
}
