//! STUB until the render module lands.
pub mod chart {
    #[derive(Debug, thiserror::Error)]
    #[error("x")]
    pub struct ChartError;
    pub struct Chart {
        pub values: serde_json::Value,
    }
    pub fn load_chart(_: &[u8]) -> Result<Chart, ChartError> {
        todo!()
    }
}
pub mod values {
    #[derive(Debug, thiserror::Error)]
    #[error("x")]
    pub struct ValuesError;
    pub fn merge(_: &mut serde_json::Value, _: &serde_json::Value) {}
    pub fn parse_values_yaml(_: &str, _: &str) -> Result<serde_json::Value, ValuesError> {
        todo!()
    }
}
pub mod repository {
    #[derive(Debug, thiserror::Error)]
    #[error("x")]
    pub struct RepositoryError;
    pub async fn fetch_chart(
        _: &reqwest::Client,
        _: &str,
        _: &str,
        _: Option<&str>,
    ) -> Result<Vec<u8>, RepositoryError> {
        todo!()
    }
}
#[derive(Debug, thiserror::Error)]
#[error("x")]
pub struct RenderError;
pub struct RenderContext {
    pub release_name: String,
    pub release_namespace: String,
    pub revision: u32,
    pub kube_version: String,
    pub api_versions: Vec<String>,
}
pub fn render_app(
    _: &chart::Chart,
    _: &serde_json::Value,
    _: &RenderContext,
) -> Result<Vec<serde_json::Value>, RenderError> {
    todo!()
}
