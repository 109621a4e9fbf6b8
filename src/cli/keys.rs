//! `hotelmatch keys`: API keys: create, rotate and revoke.

use super::*;

#[derive(Subcommand)]
pub(super) enum KeysCmd {
    /// Create a key; the token is printed once and stored only as a hash.
    Create {
        /// uploader, investigator or admin.
        #[arg(long)]
        role: hotelmatch::catalog::Role,
        /// A note on whose key it is (shown in listings, never secret).
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Replace a key: a new token of the same role takes over the old key's cases, and the
    /// old key is revoked. The new token is printed once.
    Rotate {
        /// The old key's id.
        id: String,
        /// A note on whose key the new one is.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Revoke a key by its id (fails when no active key has that id).
    Revoke {
        /// The key id (the part of the token after `hm_`, before the next `_`).
        id: String,
    },
}

pub(super) fn run(cfg: &Config, init: bool, cmd: KeysCmd, out: &mut impl Write) -> Result<()> {
    let engine = open_engine(cfg, init)?;
    match cmd {
        KeysCmd::Create { role, label } => {
            let (info, token) = engine.create_key(role, &label, "cli")?;
            writeln!(out, "{}", serde_json::json!({"id": info.id, "role": info.role, "token": token}))?;
        }
        KeysCmd::Rotate { id, label } => {
            let (info, token, cases) = engine.rotate_key(&id, &label, "cli")?;
            writeln!(out, "{}", serde_json::json!({"id": info.id, "role": info.role, "token": token, "cases": cases, "revoked": id}))?;
        }
        KeysCmd::Revoke { id } => {
            if !engine.revoke_key(&id, "cli")? {
                bail!("no active key with id {id}");
            }
            writeln!(out, "revoked")?;
        }
    }
    Ok(())
}
