//! Spin variables as the core's `Vars`: undefined means "use the default".

/// Look a variable up; errors other than "undefined" also read as unset, and
/// the core's validation names the variable when a required one is missing.
pub fn spin_var(name: &str) -> Option<String> {
    spin_sdk::variables::get(name).ok()
}
