//! The satellites' gate ([`Access`]) as mqtt5's `AuthProvider`: the broker calls `authenticate`
//! at CONNECT and `authorize_publish` / `authorize_subscribe` for every
//! PUBLISH (wills included) and SUBSCRIBE of a connection, with the user id
//! `authenticate` gave it. That user id carries the [`Principal`], so each
//! check knows who asks without a lookup that a reconnect could race.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use mqtt5::broker::auth::{AuthProvider, AuthResult};
use mqtt5::packet::connect::ConnectPacket;
use mqtt5::protocol::v5::reason_codes::ReasonCode;

use super::clients::Clients;
use crate::satellites::access::Principal;
use crate::satellites::gate::{Access, Hello, Refusal};

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Clone)]
pub(super) struct GateProvider {
    pub(super) access: Arc<Access>,
    pub(super) clients: Arc<Mutex<Clients>>,
}

/// What the gate reads of a CONNECT, owned, to take to a blocking thread.
struct Connect {
    client_id: String,
    username: Option<String>,
    password: Option<Vec<u8>>,
    clean_start: bool,
}

impl Connect {
    fn of(packet: &ConnectPacket) -> Connect {
        Connect {
            client_id: packet.client_id.clone(),
            username: packet.username.clone(),
            password: packet.password.clone(),
            clean_start: packet.clean_start,
        }
    }
}

impl GateProvider {
    fn decide(&self, connect: &Connect, peer: SocketAddr) -> AuthResult {
        let hello = Hello {
            client_id: &connect.client_id,
            username: connect.username.as_deref(),
            password: connect.password.as_deref(),
            peer,
        };
        // The gate records its own refusals; the session check's are ours.
        let admitted = self.access.connect(&hello).map_err(drop).and_then(|who| {
            let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
            let taken = clients.admit(
                &connect.client_id,
                &who,
                connect.clean_start,
                std::time::Instant::now(),
            );
            match taken {
                Ok(()) => Ok(who),
                Err(reason) => {
                    self.access.refused(Refusal::Connect {
                        hello: &hello,
                        reason,
                    });
                    Err(())
                }
            }
        });
        match admitted {
            Ok(who) => AuthResult::success_with_user(user_id(&who)),
            Err(()) => {
                // The reason stays in the hub's log: a client learns only
                // that it is not let in, not which part was wrong.
                AuthResult::fail(if hello.username.is_some() || hello.password.is_some() {
                    ReasonCode::BadUsernameOrPassword
                } else {
                    ReasonCode::NotAuthorized
                })
            }
        }
    }
}

impl AuthProvider for GateProvider {
    fn authenticate<'a>(
        &'a self,
        connect: &'a ConnectPacket,
        client_addr: SocketAddr,
    ) -> Boxed<'a, mqtt5::Result<AuthResult>> {
        // A login not seen before costs an Argon2id check: tens of
        // milliseconds, hundreds on a Pi. On the broker's own thread that
        // would stall every client's traffic, so the gate is asked from a
        // blocking thread (the broker's runtime keeps a few).
        let provider = self.clone();
        let connect = Connect::of(connect);
        Box::pin(async move {
            match tokio::task::spawn_blocking(move || provider.decide(&connect, client_addr)).await
            {
                Ok(decided) => Ok(decided),
                Err(e) => {
                    tracing::error!(peer = %client_addr, "the login check failed: {e}");
                    Ok(AuthResult::fail(ReasonCode::ServerUnavailable))
                }
            }
        })
    }

    fn authorize_publish<'a>(
        &'a self,
        client_id: &str,
        user_id: Option<&'a str>,
        topic: &'a str,
    ) -> Boxed<'a, bool> {
        let allowed = match principal(user_id) {
            Some(who) => {
                let allowed = self.access.may_publish(&who, topic);
                if !allowed {
                    self.access.refused(Refusal::Publish {
                        who: &who,
                        client_id,
                        topic,
                    });
                }
                allowed
            }
            None => false,
        };
        Box::pin(async move { allowed })
    }

    fn authorize_subscribe<'a>(
        &'a self,
        client_id: &str,
        user_id: Option<&'a str>,
        topic_filter: &'a str,
    ) -> Boxed<'a, bool> {
        let allowed = match principal(user_id) {
            Some(who) => {
                let allowed = self.access.may_subscribe(&who, topic_filter);
                if !allowed {
                    self.access.refused(Refusal::Subscribe {
                        who: &who,
                        client_id,
                        filter: topic_filter,
                    });
                }
                allowed
            }
            None => false,
        };
        Box::pin(async move { allowed })
    }
}

/// The user id the broker keeps for a connection of `who`. Injective: only
/// a satellite's starts with `sat:`, and none of the others can be one.
fn user_id(who: &Principal) -> String {
    match who {
        Principal::Hub => "hub".to_string(),
        Principal::Admin => "admin".to_string(),
        Principal::Open => "open".to_string(),
        Principal::Satellite(id) => format!("sat:{id}"),
    }
}

/// The principal behind a user id that [`user_id`] made; anything else
/// (no user id at all) is nobody, and may do nothing.
fn principal(user_id: Option<&str>) -> Option<Principal> {
    match user_id? {
        "hub" => Some(Principal::Hub),
        "admin" => Some(Principal::Admin),
        "open" => Some(Principal::Open),
        other => other
            .strip_prefix("sat:")
            .map(|id| Principal::Satellite(id.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_principal_survives_the_trip_through_the_user_id() {
        for who in [
            Principal::Hub,
            Principal::Admin,
            Principal::Open,
            Principal::Satellite("kitchen".into()),
            Principal::Satellite("hub".into()),
            Principal::Satellite(String::new()),
            Principal::Satellite("sat:x".into()),
        ] {
            assert_eq!(principal(Some(&user_id(&who))), Some(who));
        }
        assert_eq!(principal(None), None);
        assert_eq!(principal(Some("kitchen")), None);
    }
}
