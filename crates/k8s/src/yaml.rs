//! Typed objects to YAML files.

use crate::{Object, RenderError};

/// A YAML file of one or more documents, with a header saying where it came from.
pub(crate) fn file(objects: &[Object], source: &str) -> Result<String, RenderError> {
    let mut out = format!(
        "# Rendered by `georep render k8s` from {source}. Edit the topology and render again\n\
         # rather than this file.\n"
    );
    for (i, object) in objects.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        let text = serde_norway::to_string(object)
            .map_err(|e| RenderError::Internal(format!("YAML: {e}")))?;
        out.push_str(&text);
    }
    Ok(out)
}
