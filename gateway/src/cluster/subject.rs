//! Placeholder until the subject codec lands from its own branch: the same API.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    Qos0,
    Qos12,
    Retained,
}

impl Space {
    pub fn token(self) -> &'static str {
        match self {
            Space::Qos0 => "m0",
            Space::Qos12 => "m1",
            Space::Retained => "r",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SubjectError {
    #[error("the subject would be longer than 2048 bytes")]
    TooLong,
}

pub fn topic_subject(prefix: &str, space: Space, topic: &str) -> Result<String, SubjectError> {
    let root = if topic.starts_with('$') { "s" } else { "n" };
    let mut out = format!("{prefix}.{}.{root}", space.token());
    for level in topic.split('/') {
        out.push('.');
        if level.is_empty() {
            out.push('%');
        }
        for b in level.bytes() {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b >= 0x80 {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    if out.len() > 2048 {
        return Err(SubjectError::TooLong);
    }
    Ok(out)
}
