//! GitOps access: members the hub cannot dial. rsync writes each revision's objects for such a
//! cluster into its repository (one folder per project and DIG under the cluster's path, one
//! commit per change, none when nothing changed) and reads their state back from the report the
//! agent on the member writes into the same repository.

pub mod agent;
pub mod layout;
pub mod repo;

pub use repo::{Clones, Credentials, GitError, Remote};

use crate::api::clm::Cluster;

/// The remote of a GitOps cluster, with its credentials.
pub fn remote(cluster: &Cluster, credentials: Option<Credentials>) -> Option<Remote> {
    let git = cluster.spec.git_ops.as_ref()?;
    Some(Remote { url: git.repository.url.clone(), branch: git.repository.branch.clone(), credentials })
}
