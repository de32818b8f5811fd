//! What is wrong with a sink's configuration, naming the field as the user wrote it.

/// A configuration value a sink cannot work with, e.g.
/// `maxEventsPerBatch: must be 1 to 5000, found 0`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ConfigProblem {
    /// The field's name in the configuration (camelCase, with an index for list items).
    pub field: String,
    pub problem: String,
}

impl ConfigProblem {
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> ConfigProblem {
        ConfigProblem { field: field.into(), problem: problem.into() }
    }
}

/// Checks that `value` lies in `range`, as the problem `field: must be 1 to 5000, found 0`.
pub(crate) fn check_range<T>(
    field: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<(), ConfigProblem>
where
    T: PartialOrd + std::fmt::Display,
{
    if range.contains(&value) {
        Ok(())
    } else {
        Err(ConfigProblem::new(
            field,
            format!("must be {} to {}, found {value}", range.start(), range.end()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_problems_name_field_bounds_and_value() {
        assert_eq!(check_range("maxEventsPerBatch", 3, 1..=5000), Ok(()));
        let problem = check_range("maxEventsPerBatch", 0, 1..=5000).unwrap_err();
        assert_eq!(problem.to_string(), "maxEventsPerBatch: must be 1 to 5000, found 0");
    }
}
