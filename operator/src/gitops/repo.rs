//! The Git writer: one bare clone per repository and branch on local disk, used by one writer at
//! a time. A write replaces one folder of the remote branch's head with the given files, commits
//! only when the tree changed, and pushes without force; a push the remote rejects because its
//! head moved is made again on the new head (others' commits are never overwritten). libgit2 is
//! blocking: every exchange runs on tokio's blocking pool.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use git2::{
    Cred, ErrorClass, ErrorCode, FetchOptions, IndexEntry, IndexTime, Oid, PushOptions, RemoteCallbacks, Repository,
};

/// Username and password (or token) for the repository. Never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.username)
    }
}

/// A repository branch and how to sign in to it.
#[derive(Clone, Debug)]
pub struct Remote {
    pub url: String,
    pub branch: String,
    pub credentials: Option<Credentials>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum GitError {
    #[error("repository {url} unreachable: {message}")]
    Unreachable { url: String, message: String },
    #[error("repository {url} refused the credentials")]
    Authentication { url: String },
    #[error("repository {url} refused the push: {message}")]
    Refused { url: String, message: String },
    #[error("repository {url}: {message}")]
    Local { url: String, message: String },
}

impl GitError {
    /// The condition reason for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            GitError::Unreachable { .. } => "RepositoryUnreachable",
            GitError::Authentication { .. } => "AuthenticationFailed",
            GitError::Refused { .. } => "PushRefused",
            GitError::Local { .. } => "GitError",
        }
    }

    /// Whether trying again later may succeed without anyone changing anything.
    pub fn transient(&self) -> bool {
        matches!(self, GitError::Unreachable { .. })
    }
}

/// What one exchange with the remote did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The commit pushed, if the folder changed.
    pub committed: Option<String>,
    /// The remote head after the exchange.
    pub head: Option<String>,
    /// The file asked for, as the head holds it.
    pub read: Option<Vec<u8>>,
}

/// A change of one folder: its new files (relative to it), or `None` to leave it as it is.
pub struct Change {
    pub folder: String,
    pub files: Option<BTreeMap<String, Vec<u8>>>,
    pub message: String,
}

/// The local clones, one per repository and branch.
pub struct Clones {
    root: PathBuf,
    locks: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
}

/// How often a push rejected because the remote head moved is made again on the new head.
const PUSH_TRIES: usize = 5;

impl Clones {
    /// Clones live under `root` (created when missing).
    pub fn new(root: PathBuf) -> Self {
        // Fail fast on a dead server instead of the system's TCP timeout; a stuck transfer ends too.
        static TIMEOUTS: std::sync::Once = std::sync::Once::new();
        // SAFETY: libgit2 globals, set once, before this process's first exchange.
        TIMEOUTS.call_once(|| unsafe {
            let _ = git2::opts::set_server_connect_timeout_in_milliseconds(5_000);
            let _ = git2::opts::set_server_timeout_in_milliseconds(30_000);
        });
        Clones { root, locks: Default::default() }
    }

    /// Under `$EMCO_GIT_DIR`, else the system's temporary folder.
    pub fn from_env() -> Self {
        let root = std::env::var_os("EMCO_GIT_DIR").map(PathBuf::from);
        Self::new(root.unwrap_or_else(|| std::env::temp_dir().join("emco-git")))
    }

    /// Fetches the branch, applies `change` (if any), pushes, and reads `read` from the head.
    pub async fn exchange(
        &self,
        remote: &Remote,
        change: Option<Change>,
        read: Option<&str>,
    ) -> Result<Exchange, GitError> {
        let read = read.map(str::to_string);
        self.with_repo(remote, self.clone_path(remote), move |repo, remote| {
            exchange(repo, remote, change, read.as_deref())
        })
        .await
    }

    /// Whether the remote answers and would take a push from these credentials (it advertises
    /// its refs for receive-pack).
    pub async fn probe(&self, remote: &Remote) -> Result<(), GitError> {
        self.with_repo(remote, self.root.join("probe"), |repo, remote| {
            let mut anonymous = repo.remote_anonymous(&remote.url).map_err(|e| local(remote, e))?;
            let auth = Cell::new(false);
            let connected = anonymous.connect_auth(git2::Direction::Push, Some(callbacks(remote, &auth)), None);
            connected.map(|_| ()).map_err(|e| classify(remote, e, auth.get()))
        })
        .await
    }

    /// Files under `folder` at the remote head (paths relative to `folder`), `read` there, and
    /// the head.
    pub async fn snapshot(
        &self,
        remote: &Remote,
        folder: &str,
        read: &str,
    ) -> Result<(BTreeMap<String, Vec<u8>>, Option<Vec<u8>>, Option<String>), GitError> {
        let (folder, read) = (folder.to_string(), read.to_string());
        self.with_repo(remote, self.clone_path(remote), move |repo, remote| {
            let Some(head) = fetch(repo, remote)? else { return Ok((BTreeMap::new(), None, None)) };
            let tree = repo.find_commit(head).and_then(|c| c.tree()).map_err(|e| local(remote, e))?;
            let files = files_under(repo, &tree, &folder).map_err(|e| local(remote, e))?;
            Ok((files, blob_at(repo, &tree, &read), Some(head.to_string())))
        })
        .await
    }

    /// The local clone of `remote`'s branch.
    fn clone_path(&self, remote: &Remote) -> PathBuf {
        self.root.join(crate::hex::digest(format!("{}\u{0}{}", remote.url, remote.branch).as_bytes(), 12))
    }

    /// Runs `work` on the repository at `path` on the blocking pool, alone on that repository.
    async fn with_repo<T: Send + 'static>(
        &self,
        remote: &Remote,
        path: PathBuf,
        work: impl FnOnce(&Repository, &Remote) -> Result<T, GitError> + Send + 'static,
    ) -> Result<T, GitError> {
        let lock = self.locks.lock().unwrap().entry(path.clone()).or_default().clone();
        let _held = lock.lock_owned().await;
        let remote = remote.clone();
        let url = remote.url.clone();
        tokio::task::spawn_blocking(move || work(&open(&path).map_err(|e| local(&remote, e))?, &remote))
            .await
            .map_err(|e| GitError::Local { url, message: e.to_string() })?
    }
}

fn open(path: &Path) -> Result<Repository, git2::Error> {
    match Repository::open_bare(path) {
        Ok(r) => Ok(r),
        Err(_) => {
            std::fs::create_dir_all(path).map_err(|e| git2::Error::from_str(&e.to_string()))?;
            Repository::init_bare(path)
        }
    }
}

fn local(remote: &Remote, e: git2::Error) -> GitError {
    GitError::Local { url: remote.url.clone(), message: e.message().to_string() }
}

/// Sign-in from the credentials, at most once per connection (a second ask means they were
/// refused; libgit2 would ask forever).
fn callbacks<'a>(remote: &'a Remote, refused: &'a Cell<bool>) -> RemoteCallbacks<'a> {
    let mut callbacks = RemoteCallbacks::new();
    let asked = Cell::new(false);
    callbacks.credentials(move |_, _, _| match (&remote.credentials, asked.replace(true)) {
        (Some(c), false) => Cred::userpass_plaintext(&c.username, &c.password),
        _ => {
            refused.set(true);
            Err(git2::Error::from_str("the repository refused the credentials"))
        }
    });
    callbacks
}

fn classify(remote: &Remote, e: git2::Error, auth_refused: bool) -> GitError {
    let url = remote.url.clone();
    let message = e.message().to_string();
    if auth_refused || e.code() == ErrorCode::Auth || message.contains("401") {
        return GitError::Authentication { url };
    }
    if message.contains("403") {
        return GitError::Refused { url, message };
    }
    match e.class() {
        ErrorClass::Net | ErrorClass::Os | ErrorClass::Http | ErrorClass::Ssl => GitError::Unreachable { url, message },
        _ => GitError::Local { url, message },
    }
}

/// Fetches the branch into `refs/remotes/origin/<branch>`; its commit (none while the remote
/// branch does not exist).
fn fetch(repo: &Repository, remote: &Remote) -> Result<Option<Oid>, GitError> {
    let tracking = format!("refs/remotes/origin/{}", remote.branch);
    let mut anonymous = repo.remote_anonymous(&remote.url).map_err(|e| local(remote, e))?;
    let auth = Cell::new(false);
    let mut options = FetchOptions::new();
    options.remote_callbacks(callbacks(remote, &auth));
    let refspec = format!("+refs/heads/{}:{tracking}", remote.branch);
    anonymous.fetch(&[refspec], Some(&mut options), None).map_err(|e| classify(remote, e, auth.get()))?;
    Ok(repo.refname_to_id(&tracking).ok())
}

fn exchange(
    repo: &Repository,
    remote: &Remote,
    change: Option<Change>,
    read: Option<&str>,
) -> Result<Exchange, GitError> {
    let mut out = Exchange::default();
    let mut head = fetch(repo, remote)?;
    if let Some(Change { folder, files: Some(files), message }) = change {
        for _ in 0..PUSH_TRIES {
            let Some(commit) = commit(repo, head, &folder, &files, &message).map_err(|e| local(remote, e))? else {
                break; // the head holds these files already
            };
            match push(repo, remote, commit)? {
                true => {
                    out.committed = Some(commit.to_string());
                    head = Some(commit);
                    break;
                }
                // The remote head moved: make the change again on the new head.
                false => head = fetch(repo, remote)?,
            }
        }
        if out.committed.is_none() && head.is_some_and(|h| !holds(repo, h, &folder, &files)) {
            return Err(GitError::Refused {
                url: remote.url.clone(),
                message: format!("the remote head kept moving ({PUSH_TRIES} tries)"),
            });
        }
    }
    if let Some(h) = head {
        out.head = Some(h.to_string());
        if let Some(file) = read {
            let tree = repo.find_commit(h).and_then(|c| c.tree()).map_err(|e| local(remote, e))?;
            out.read = blob_at(repo, &tree, file);
        }
    }
    Ok(out)
}

/// The tree of `head` with `folder` holding exactly `files`.
fn tree_with(
    repo: &Repository,
    head: Option<Oid>,
    folder: &str,
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<Oid, git2::Error> {
    let mut index = git2::Index::new()?;
    if let Some(h) = head {
        index.read_tree(&repo.find_commit(h)?.tree()?)?;
    }
    index.remove_dir(Path::new(folder), 0)?;
    for (name, content) in files {
        let path = format!("{folder}/{name}").into_bytes();
        let entry = IndexEntry {
            ctime: IndexTime::new(0, 0),
            mtime: IndexTime::new(0, 0),
            dev: 0,
            ino: 0,
            mode: 0o100644,
            uid: 0,
            gid: 0,
            file_size: content.len() as u32,
            id: repo.blob(content)?,
            flags: path.len().min(0xfff) as u16,
            flags_extended: 0,
            path,
        };
        index.add(&entry)?;
    }
    index.write_tree_to(repo)
}

/// Whether `head`'s `folder` holds exactly `files`.
fn holds(repo: &Repository, head: Oid, folder: &str, files: &BTreeMap<String, Vec<u8>>) -> bool {
    let current = repo.find_commit(head).map(|c| c.tree_id());
    current.ok() == tree_with(repo, Some(head), folder, files).ok()
}

/// A commit on `head` with `folder` replaced by `files`; none when that changes nothing.
fn commit(
    repo: &Repository,
    head: Option<Oid>,
    folder: &str,
    files: &BTreeMap<String, Vec<u8>>,
    message: &str,
) -> Result<Option<Oid>, git2::Error> {
    let tree_id = tree_with(repo, head, folder, files)?;
    let parent = head.map(|h| repo.find_commit(h)).transpose()?;
    if parent.as_ref().is_some_and(|p| p.tree_id() == tree_id) || (parent.is_none() && files.is_empty()) {
        return Ok(None);
    }
    let tree = repo.find_tree(tree_id)?;
    let signature = git2::Signature::now("emco", "emco@localhost")?;
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    repo.commit(None, &signature, &signature, message, &tree, &parents).map(Some)
}

/// Pushes `commit` to the branch without force: whether the remote took it (false: its head
/// moved on; any other refusal is an error).
fn push(repo: &Repository, remote: &Remote, commit: Oid) -> Result<bool, GitError> {
    const LOCAL: &str = "refs/heads/emco-push";
    repo.reference(LOCAL, commit, true, "emco push").map_err(|e| local(remote, e))?;
    let mut anonymous = repo.remote_anonymous(&remote.url).map_err(|e| local(remote, e))?;
    let auth = Cell::new(false);
    let rejected: Cell<Option<String>> = Cell::new(None);
    let mut callbacks = callbacks(remote, &auth);
    callbacks.push_update_reference(|_, status| {
        rejected.set(status.map(str::to_string));
        Ok(())
    });
    let mut options = PushOptions::new();
    options.remote_callbacks(callbacks);
    let refspec = format!("{LOCAL}:refs/heads/{}", remote.branch);
    match anonymous.push(&[refspec], Some(&mut options)) {
        Err(e) if e.code() == ErrorCode::NotFastForward || e.message().contains("fast-forward") => return Ok(false),
        Err(e) => return Err(classify(remote, e, auth.get())),
        Ok(()) => {}
    }
    match rejected.take() {
        None => Ok(true),
        Some(s) if s.contains("fast-forward") || s.contains("fetch first") || s.contains("stale") => Ok(false),
        Some(message) => Err(GitError::Refused { url: remote.url.clone(), message }),
    }
}

/// The content of `file` in `tree`, if it is a file there.
fn blob_at(repo: &Repository, tree: &git2::Tree, file: &str) -> Option<Vec<u8>> {
    let entry = tree.get_path(Path::new(file)).ok()?;
    Some(entry.to_object(repo).ok()?.peel_to_blob().ok()?.content().to_vec())
}

/// Every file under `folder` in `tree`, by path relative to `folder`.
fn files_under(repo: &Repository, tree: &git2::Tree, folder: &str) -> Result<BTreeMap<String, Vec<u8>>, git2::Error> {
    let mut files = BTreeMap::new();
    let Ok(entry) = tree.get_path(Path::new(folder)) else { return Ok(files) };
    let Ok(sub) = entry.to_object(repo)?.peel_to_tree() else { return Ok(files) };
    sub.walk(git2::TreeWalkMode::PreOrder, |root, e| {
        if e.kind() == Some(git2::ObjectType::Blob)
            && let Some(blob) = e.to_object(repo).ok().and_then(|o| o.peel_to_blob().ok())
        {
            files.insert(format!("{root}{}", e.name().unwrap_or_default()), blob.content().to_vec());
        }
        git2::TreeWalkResult::Ok
    })?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    //! Against a real bare repository on local disk (libgit2's local transport): the same
    //! fetch, commit and push code as over HTTP.
    use super::*;

    fn remote(dir: &Path) -> Remote {
        let bare = dir.join("fleet.git");
        Repository::init_bare(&bare).unwrap();
        Remote { url: bare.to_str().unwrap().to_string(), branch: "main".into(), credentials: None }
    }

    fn change(folder: &str, files: &[(&str, &str)], message: &str) -> Change {
        let files = files.iter().map(|(n, c)| (n.to_string(), c.as_bytes().to_vec())).collect();
        Change { folder: folder.into(), files: Some(files), message: message.into() }
    }

    fn commits(remote: &Remote) -> usize {
        let repo = Repository::open_bare(&remote.url).unwrap();
        let mut walk = repo.revwalk().unwrap();
        walk.push_ref("refs/heads/main").unwrap();
        walk.count()
    }

    #[tokio::test]
    async fn commits_only_changes_and_keeps_other_writers_commits() {
        let dir = std::env::temp_dir().join(format!("emco-git-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let remote = remote(&dir);
        let (hub, agent) = (Clones::new(dir.join("hub")), Clones::new(dir.join("agent")));

        let first = hub.exchange(&remote, Some(change("c/p/d", &[("a.yaml", "1")], "r1")), None).await.unwrap();
        assert!(first.committed.is_some());
        let same = hub.exchange(&remote, Some(change("c/p/d", &[("a.yaml", "1")], "r1 again")), None).await.unwrap();
        assert_eq!(same.committed, None, "unchanged content makes no commit");

        // Another writer's commit lands in between: the next write builds on it.
        let status = agent.exchange(&remote, Some(change("s", &[("status.yaml", "ok")], "status")), None);
        assert!(status.await.unwrap().committed.is_some());
        let second = hub.exchange(&remote, Some(change("c/p/d", &[("b.yaml", "2")], "r2")), Some("s/status.yaml"));
        let second = second.await.unwrap();
        assert_eq!(second.read.as_deref(), Some(&b"ok"[..]), "the other writer's file is kept");
        assert_eq!(commits(&remote), 3);
        let (files, _, _) = agent.snapshot(&remote, "c/p/d", "none").await.unwrap();
        assert_eq!(files.keys().collect::<Vec<_>>(), ["b.yaml"], "the folder holds exactly the new files");

        // A push from a stale head is refused by the remote, never forced.
        let repo = Repository::open_bare(dir.join("hub").read_dir().unwrap().next().unwrap().unwrap().path()).unwrap();
        let stale = repo.find_commit(Oid::from_str(first.committed.as_ref().unwrap()).unwrap()).unwrap().id();
        let files = BTreeMap::from([("c.yaml".to_string(), b"3".to_vec())]);
        let behind = commit(&repo, Some(stale), "c/p/d", &files, "from a stale head").unwrap().unwrap();
        assert!(!push(&repo, &remote, behind).unwrap(), "a non-fast-forward push is turned down");
        assert_eq!(commits(&remote), 3);

        // Terminate: the folder goes.
        let gone = hub.exchange(&remote, Some(change("c/p/d", &[], "terminate")), None).await.unwrap();
        assert!(gone.committed.is_some());
        let (files, _, _) = agent.snapshot(&remote, "c/p/d", "none").await.unwrap();
        assert!(files.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
