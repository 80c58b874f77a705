//! Dependency order of named nodes, the one walk over app dependencies: validate refuses a cycle
//! with it, rsync orders apps with it. Dependencies on names that are not nodes are ignored.

/// The nodes with every dependency before its dependents, otherwise in the order given; on a
/// cycle, the first node that cannot be placed.
pub fn order<'a>(nodes: &[(&'a str, Vec<&'a str>)]) -> Result<Vec<&'a str>, &'a str> {
    let known = |name: &str| nodes.iter().any(|(n, _)| *n == name);
    let mut placed: Vec<&'a str> = Vec::with_capacity(nodes.len());
    while placed.len() < nodes.len() {
        let ready = nodes
            .iter()
            .find(|(name, deps)| !placed.contains(name) && deps.iter().all(|d| placed.contains(d) || !known(d)));
        match ready {
            Some((name, _)) => placed.push(name),
            None => return Err(nodes.iter().map(|(n, _)| *n).find(|n| !placed.contains(n)).unwrap_or_default()),
        }
    }
    Ok(placed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_first_otherwise_as_given() {
        let nodes = [("web", vec!["api"]), ("api", vec!["db", "gone"]), ("db", vec![]), ("cache", vec![])];
        assert_eq!(order(&nodes), Ok(vec!["db", "api", "web", "cache"]));
    }

    #[test]
    fn a_cycle_names_a_node_on_it_or_behind_it() {
        let nodes = [("a", vec!["b"]), ("b", vec!["c"]), ("c", vec!["a"]), ("d", vec![])];
        assert_eq!(order(&nodes), Err("a"));
    }
}
