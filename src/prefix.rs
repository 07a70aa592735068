//! The table prefix: validated once, then only ever used inside quoted identifiers.

use crate::error::{Error, Result};

/// The longest prefix accepted. Postgres truncates identifiers at 63 bytes; with this bound
/// every name chancy spells out itself (e.g. `<prefix>workflows_steps_unique_idx`) fits.
pub(crate) const MAX_PREFIX_LEN: usize = 32;

/// A validated table prefix such as `chancy_` (the default).
///
/// Valid prefixes match `[A-Za-z_][A-Za-z0-9_]*` and are at most 32 bytes.
/// Like Python Chancy, the prefix is case-sensitive: identifiers are always quoted.
///
/// ```
/// use chancy::Prefix;
/// assert!(Prefix::new("chancy_").is_ok());
/// assert!(Prefix::new("bad-prefix").is_err());
/// assert!(Prefix::new("x\"; DROP TABLE y; --").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Prefix(String);

impl Prefix {
    /// The default prefix, `chancy_`.
    pub const DEFAULT: &'static str = "chancy_";

    /// Validates `prefix`.
    ///
    /// # Errors
    /// A configuration error naming the rule the prefix breaks.
    pub fn new(prefix: &str) -> Result<Prefix> {
        let mut chars = prefix.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !first_ok || !rest_ok {
            return Err(Error::config(format!(
                "invalid table prefix {prefix:?}: it must start with a letter or underscore and \
                 contain only ASCII letters, digits and underscores"
            )));
        }
        if prefix.len() > MAX_PREFIX_LEN {
            return Err(Error::config(format!(
                "invalid table prefix {prefix:?}: at most {MAX_PREFIX_LEN} characters are allowed"
            )));
        }
        Ok(Prefix(prefix.to_string()))
    }

    /// The prefix as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The NOTIFY channel, `<prefix>events`.
    pub fn channel(&self) -> String {
        format!("{}events", self.0)
    }

    /// `"<prefix><name>"`, a quoted identifier for your own SQL against chancy's tables.
    ///
    /// ```
    /// assert_eq!(chancy::Prefix::default().table("jobs"), "\"chancy_jobs\"");
    /// ```
    pub fn table(&self, name: &str) -> String {
        format!("\"{}{}\"", self.0, name)
    }

    /// Replaces every `{prefix}` in an SQL template. Safe because the prefix was validated.
    pub(crate) fn render(&self, template: &str) -> String {
        template.replace("{prefix}", &self.0)
    }
}

impl Default for Prefix {
    fn default() -> Self {
        Prefix(Prefix::DEFAULT.to_string())
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_identifiers() {
        for p in ["chancy_", "_x", "A1_b", "x"] {
            assert_eq!(Prefix::new(p).unwrap().as_str(), p);
        }
    }

    #[test]
    fn rejects_everything_else() {
        for p in [
            "",
            "1abc",
            "a-b",
            "a b",
            "ä",
            "a\"b",
            "a;b",
            &"x".repeat(33),
        ] {
            let err = Prefix::new(p).unwrap_err();
            assert!(err.is_config(), "{p:?}");
        }
    }

    #[test]
    fn renders_quoted_names() {
        let p = Prefix::new("t_").unwrap();
        assert_eq!(p.table("jobs"), "\"t_jobs\"");
        assert_eq!(
            p.render("SELECT * FROM \"{prefix}jobs\""),
            "SELECT * FROM \"t_jobs\""
        );
        assert_eq!(p.channel(), "t_events");
    }
}
