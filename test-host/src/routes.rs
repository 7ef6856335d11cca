//! `[[trigger.http]]` routes: exact (`/tick`) or wildcard (`/api/...`), the
//! most specific one wins (exact before wildcard, longer prefix first).

use anyhow::{bail, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub route: String,
    pub component: String,
    /// Prefix for `/prefix/...` routes (`""` for `/...`), `None` for exact ones.
    wildcard_prefix: Option<String>,
}

/// Where a request landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch<'a> {
    pub route: &'a Route,
    /// The part of the path after the route's prefix (Spin's `spin-path-info`).
    pub path_info: String,
    /// The route's fixed part (Spin's `spin-component-route`).
    pub component_route: String,
}

impl Route {
    pub fn new(route: &str, component: &str) -> Result<Route> {
        if !route.starts_with('/') {
            bail!("route {route:?} must start with '/'");
        }
        let wildcard_prefix = route
            .strip_suffix("/...")
            .map(|p| p.trim_end_matches('/').to_string());
        if wildcard_prefix.is_none() && route.contains("...") {
            bail!("route {route:?}: '...' is allowed only as the last segment");
        }
        Ok(Route {
            route: route.to_string(),
            component: component.to_string(),
            wildcard_prefix,
        })
    }

    fn exact_path(&self) -> &str {
        let trimmed = self.route.trim_end_matches('/');
        if trimmed.is_empty() {
            "/"
        } else {
            trimmed
        }
    }
}

/// Finds the route for `path` (no query string).
pub fn find<'a>(routes: &'a [Route], path: &str) -> Option<RouteMatch<'a>> {
    let normalized = match path.trim_end_matches('/') {
        "" => "/",
        p => p,
    };
    if let Some(route) = routes
        .iter()
        .find(|r| r.wildcard_prefix.is_none() && r.exact_path() == normalized)
    {
        return Some(RouteMatch {
            route,
            path_info: String::new(),
            component_route: route.exact_path().to_string(),
        });
    }
    routes
        .iter()
        .filter_map(|r| {
            let prefix = r.wildcard_prefix.as_deref()?;
            let rest = path.strip_prefix(prefix)?;
            (rest.is_empty() || rest.starts_with('/')).then_some((prefix.len(), r, rest))
        })
        .max_by_key(|(len, _, _)| *len)
        .map(|(_, route, rest)| RouteMatch {
            route,
            path_info: rest.to_string(),
            component_route: route.wildcard_prefix.clone().unwrap_or_default(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> Vec<Route> {
        vec![
            Route::new("/tick", "poller").unwrap(),
            Route::new("/api/...", "api").unwrap(),
            Route::new("/api/special", "special").unwrap(),
            Route::new("/api/deep/...", "deep").unwrap(),
        ]
    }

    #[test]
    fn exact_then_longest_wildcard() {
        let r = routes();
        assert_eq!(find(&r, "/tick").unwrap().route.component, "poller");
        assert_eq!(find(&r, "/tick/").unwrap().route.component, "poller");
        assert!(find(&r, "/tick/x").is_none());
        assert!(find(&r, "/ticks").is_none());
        assert_eq!(find(&r, "/api/special").unwrap().route.component, "special");
        let m = find(&r, "/api/x/y").unwrap();
        assert_eq!(
            (m.route.component.as_str(), m.path_info.as_str()),
            ("api", "/x/y")
        );
        assert_eq!(find(&r, "/api").unwrap().route.component, "api");
        assert!(find(&r, "/apix").is_none());
        assert_eq!(find(&r, "/api/deep/1").unwrap().route.component, "deep");
    }

    #[test]
    fn catch_all() {
        let r = vec![Route::new("/...", "all").unwrap()];
        assert_eq!(find(&r, "/anything/at/all").unwrap().route.component, "all");
        assert_eq!(find(&r, "/").unwrap().path_info, "/");
    }
}
