//! Which model answers when another fails: the pairs given to
//! [`fallback`](crate::LlmRetryMiddlewareBuilder::fallback), and the walk
//! along them for one request.

/// The fallback of each model, in the order the pairs were given.
///
/// A handful of pairs at most, so a list: looking one up costs less than
/// hashing the name, and an empty table costs nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Fallbacks {
    pairs: Vec<(Box<str>, Box<str>)>,
}

impl Fallbacks {
    /// Makes `to` the fallback of `from`, replacing the one `from` had.
    /// An empty name names no model, so such a pair is not kept.
    pub(crate) fn insert(&mut self, from: String, to: String) {
        if from.is_empty() || to.is_empty() {
            return;
        }
        match self.pairs.iter_mut().find(|(known, _)| **known == *from) {
            Some((_, target)) => *target = to.into_boxed_str(),
            None => self.pairs.push((from.into_boxed_str(), to.into_boxed_str())),
        }
    }

    /// Whether no fallback is configured: the one check a request pays then.
    pub(crate) fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The model `model` falls back to, if it has one, whatever was tried.
    pub(crate) fn target(&self, model: &str) -> Option<&str> {
        self.pairs.iter().find(|(from, _)| **from == *model).map(|(_, to)| &**to)
    }

    /// The model to try after `model` failed, unless it was already tried
    /// for this request (`tried`): a chain ends at a model already tried, so
    /// a cycle (`a → b → a`) sends each model once.
    pub(crate) fn next<'t>(&'t self, model: &str, tried: &[&str]) -> Option<&'t str> {
        self.target(model).filter(|to| !tried.contains(to))
    }

    /// The table's own copy of `model`, when it has a fallback.
    fn key(&self, model: &str) -> Option<&str> {
        self.pairs.iter().find(|(from, _)| **from == *model).map(|(from, _)| &**from)
    }
}

/// The models one request has been sent to, the requested one first: where
/// its chain of fallbacks stands. Every name is the table's, so the walk
/// allocates only its list.
#[derive(Debug, Clone)]
pub(crate) struct Chain<'t> {
    table: &'t Fallbacks,
    tried: Vec<&'t str>,
}

impl<'t> Chain<'t> {
    /// The walk from `requested`; `None` when it has no fallback.
    pub(crate) fn start(table: &'t Fallbacks, requested: &str) -> Option<Chain<'t>> {
        let requested = table.key(requested)?;
        Some(Chain { table, tried: vec![requested] })
    }

    /// The next model to send the request to, now counted as tried; `None`
    /// at the end of the chain, or where it comes back to a model tried.
    pub(crate) fn advance(&mut self) -> Option<&'t str> {
        let next = self.table.next(self.current(), &self.tried)?;
        self.tried.push(next);
        Some(next)
    }

    /// The model the caller asked for.
    pub(crate) fn requested(&self) -> &'t str {
        self.tried[0]
    }

    /// The model the request goes to now.
    pub(crate) fn current(&self) -> &'t str {
        self.tried[self.tried.len() - 1]
    }

    /// Every model tried, in order.
    pub(crate) fn tried(&self) -> &[&'t str] {
        &self.tried
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(pairs: &[(&str, &str)]) -> Fallbacks {
        let mut table = Fallbacks::default();
        for &(from, to) in pairs {
            table.insert(from.to_owned(), to.to_owned());
        }
        table
    }

    /// Every model a request for `requested` is sent to, in order.
    fn walk(table: &Fallbacks, requested: &str) -> Vec<String> {
        let Some(mut chain) = Chain::start(table, requested) else { return vec![requested.to_owned()] };
        // Bounded: a walk that failed to stop at a tried model must fail, not hang.
        for _ in 0..10 {
            if chain.advance().is_none() {
                break;
            }
        }
        assert_eq!(chain.requested(), requested);
        chain.tried().iter().map(|m| m.to_string()).collect()
    }

    #[test]
    fn chains_end_at_their_last_model_or_at_one_already_tried() {
        /// The pairs, the requested model, every model it is sent to.
        type Case = (&'static [(&'static str, &'static str)], &'static str, &'static [&'static str]);
        let cases: &[Case] = &[
            (&[], "opus", &["opus"]),
            (&[("opus", "sonnet")], "opus", &["opus", "sonnet"]),
            (&[("opus", "sonnet")], "sonnet", &["sonnet"]),
            (&[("opus", "sonnet"), ("sonnet", "haiku")], "opus", &["opus", "sonnet", "haiku"]),
            (&[("sonnet", "haiku"), ("opus", "sonnet")], "opus", &["opus", "sonnet", "haiku"]),
            (&[("opus", "sonnet"), ("sonnet", "haiku")], "sonnet", &["sonnet", "haiku"]),
            (&[("a", "b"), ("b", "a")], "a", &["a", "b"]),
            (&[("a", "b"), ("b", "a")], "b", &["b", "a"]),
            (&[("a", "a")], "a", &["a"]),
            (&[("a", "b"), ("b", "c"), ("c", "b")], "a", &["a", "b", "c"]),
            // A later pair for the same model replaces the earlier one.
            (&[("opus", "sonnet"), ("opus", "haiku")], "opus", &["opus", "haiku"]),
            // Names are exact.
            (&[("Opus", "sonnet")], "opus", &["opus"]),
            // An empty name is no model.
            (&[("", "sonnet"), ("opus", "")], "opus", &["opus"]),
        ];
        for &(pairs, requested, want) in cases {
            assert_eq!(walk(&table(pairs), requested), want, "{pairs:?} from {requested}");
        }
    }

    #[test]
    fn next_skips_what_was_tried() {
        let table = table(&[("opus", "sonnet"), ("sonnet", "haiku")]);
        assert_eq!(table.next("opus", &[]), Some("sonnet"));
        assert_eq!(table.next("opus", &["opus"]), Some("sonnet"));
        assert_eq!(table.next("opus", &["opus", "sonnet"]), None);
        assert_eq!(table.next("sonnet", &["opus", "sonnet"]), Some("haiku"));
        assert_eq!(table.next("haiku", &["opus", "sonnet", "haiku"]), None);
        assert_eq!(table.target("opus"), Some("sonnet"));
        assert!(!table.is_empty() && Fallbacks::default().is_empty());
    }

    #[test]
    fn a_chain_follows_its_current_model() {
        let table = table(&[("opus", "sonnet"), ("sonnet", "haiku")]);
        let mut chain = Chain::start(&table, "opus").unwrap();
        assert_eq!((chain.requested(), chain.current()), ("opus", "opus"));
        assert_eq!(chain.advance(), Some("sonnet"));
        assert_eq!((chain.requested(), chain.current()), ("opus", "sonnet"));
        assert_eq!(chain.advance(), Some("haiku"));
        assert_eq!(chain.advance(), None);
        assert_eq!(chain.current(), "haiku", "the end of a chain leaves the last model current");
        assert!(Chain::start(&table, "haiku").is_none(), "a model without a fallback has no chain");
    }
}
