//! Checks across bridges, which no single entry can make on its own: names are
//! unique, and no two bridges serve the same target.
//!
//! What is checked about targets (see [`TargetClaim::conflicts_with`]): an exact
//! target (`openai_chat_sse`'s `mappings.target`, `matrix_event`'s `{name}.send`)
//! must not equal another exact target, an `mcp_tool` `target_prefix` must not
//! equal another prefix, and an exact target must not be `{prefix}.{one token}` of
//! a prefix, where a tool of that name could appear. Tool names are only known at
//! run time, so these prefix checks are the most that can be said without I/O.

use crate::bridge::{BridgeRead, TargetClaim};
use crate::error::Report;

/// Reports duplicate names and clashing targets, each at the later bridge.
pub(crate) fn check_bridges(reads: &[BridgeRead], r: &mut Report) {
    let mut duplicate_name = vec![false; reads.len()];
    for (i, b) in reads.iter().enumerate() {
        let Some(name) = &b.name else { continue };
        if let Some(first) = reads[..i]
            .iter()
            .position(|x| x.name.as_ref() == Some(name))
        {
            duplicate_name[i] = true;
            r.error(
                &b.path.key("name"),
                format!("duplicate bridge name {name:?} (already used by bridges[{first}])"),
            );
        }
    }
    for (i, b) in reads.iter().enumerate() {
        let name_path = b.path.key("name");
        for claim in &b.claims {
            // A duplicate name already explains the clash of the targets named after it.
            if duplicate_name[i] && claim.path == name_path {
                continue;
            }
            let earlier = reads[..i].iter().enumerate().find_map(|(j, other)| {
                other
                    .claims
                    .iter()
                    .find(|c| c.target.conflicts_with(&claim.target))
                    .map(|c| (j, other, &c.target))
            });
            if let Some((j, other, theirs)) = earlier {
                let who = match &other.name {
                    Some(n) => format!("bridge {n:?} (bridges[{j}])"),
                    None => format!("bridges[{j}]"),
                };
                r.error(&claim.path, clash_message(&claim.target, theirs, &who));
            }
        }
    }
}

fn clash_message(mine: &TargetClaim, theirs: &TargetClaim, who: &str) -> String {
    use TargetClaim::{Exact, Prefix};
    match (mine, theirs) {
        (Exact(t), Exact(_)) => format!("duplicate target {t:?}: also served by {who}"),
        (Prefix(p), Prefix(_)) => format!("duplicate target prefix {p:?}: also used by {who}"),
        (Exact(t), Prefix(p)) => format!(
            "target {t:?} may clash with a tool of {who}, which serves every \"{p}.<tool>\""
        ),
        (Prefix(p), Exact(t)) => format!(
            "target prefix {p:?} covers target {t:?} of {who}: a tool of that name would clash"
        ),
    }
}
