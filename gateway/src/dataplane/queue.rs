//! Pull delivery endpoints of namespace topic subscriptions (receive, acknowledge, release, reject, renew).
pub(super) fn routes() -> axum::Router<std::sync::Arc<super::DataPlane>> { axum::Router::new() }
