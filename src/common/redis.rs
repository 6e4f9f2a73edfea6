//! How medic reaches a Redis server, shared by the `redis` collector and the `redis`
//! actuator: the URL (`redis://` or `rediss://`), ACL user, password secret and TLS settings,
//! turned into a client, and a connection bounded in time.

use std::time::Duration as StdDuration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, IntoConnectionInfo};

use super::Secret;
use super::tls::TlsConfig;

/// The connection settings of one Redis server, as both config structs spell them
/// (`url`, `username`, `password`, `tls`). The fields stay in each config struct (not a
/// flattened one) so that a bad key keeps its line and column in the error.
#[derive(Clone, Copy)]
pub struct RedisTarget<'a> {
    pub url: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a Secret>,
    pub tls: &'a TlsConfig,
}

/// A client built from [`RedisTarget`]; connects to nothing until asked.
pub struct RedisClient {
    pub client: redis::Client,
    /// `HOST:PORT` from the URL (the default `instance` label).
    pub addr: String,
}

/// A bad connection setting; the message names the field and never holds a secret
/// (redis-rs's errors do not echo the URL).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RedisTargetError(pub String);

impl RedisTarget<'_> {
    /// The settings in a `Debug` print of a config struct, the URL's password redacted.
    pub fn debug_fields(&self, d: &mut std::fmt::DebugStruct<'_, '_>) {
        d.field("url", &super::redact_url(self.url))
            .field("username", &self.username)
            .field("password", &self.password)
            .field("tls", &self.tls);
    }

    /// Reads the password and builds the client for the `kind` (`collector`, `actuator`)
    /// named `name`, warning when the URL itself carries a password.
    pub fn client(&self, kind: &str, name: &str) -> Result<RedisClient, RedisTargetError> {
        let client = self.build()?;
        if client.1 {
            tracing::warn!(
                kind,
                name,
                "url {} carries a password: prefer `password: {{file: ...}}` or `{{env: ...}}`",
                super::redact_url(self.url)
            );
        }
        Ok(client.0)
    }

    /// The client, and whether the URL carried a password.
    fn build(&self) -> Result<(RedisClient, bool), RedisTargetError> {
        let bad = |s: String| RedisTargetError(s);
        if self.url.starts_with("rediss://") {
            super::tls::init_tls();
        } else if self.tls.ca_file.is_some() || self.tls.insecure_skip_verify {
            return Err(bad("tls: needs a rediss:// url".into()));
        }
        let mut info = self
            .url
            .into_connection_info()
            .map_err(|e| bad(format!("url: {e}")))?;
        let addr = info.addr().to_string();
        let mut settings = info.redis_settings().clone();
        let password_in_url = settings.password().is_some();
        if let Some(u) = self.username {
            settings = settings.set_username(u);
        }
        if let Some(p) = self.password {
            let p = p.read().map_err(|e| bad(format!("password: {e}")))?;
            settings = settings.set_password(p.expose());
        }
        info = info.set_redis_settings(settings);
        if self.tls.insecure_skip_verify
            && let redis::ConnectionAddr::TcpTls { host, port, .. } = info.addr().clone()
        {
            info = info.set_addr(redis::ConnectionAddr::TcpTls {
                host,
                port,
                insecure: true,
                tls_params: None,
            });
        }
        let client = match &self.tls.ca_file {
            Some(ca) => {
                let pem = std::fs::read(ca)
                    .map_err(|e| bad(format!("tls.ca_file {}: {e}", ca.display())))?;
                redis::Client::build_with_tls(
                    info,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem),
                    },
                )
                .map_err(|e| bad(format!("tls.ca_file {}: {e}", ca.display())))?
            }
            None => redis::Client::open(info).map_err(|e| bad(format!("url: {e}")))?,
        };
        Ok((RedisClient { client, addr }, password_in_url))
    }
}

impl RedisClient {
    /// A new connection whose connect and every reply are bounded by `timeout`.
    pub async fn connect(
        &self,
        timeout: StdDuration,
    ) -> Result<MultiplexedConnection, redis::RedisError> {
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        self.client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_settings_need_rediss() {
        let tls = TlsConfig {
            ca_file: None,
            insecure_skip_verify: true,
        };
        let t = RedisTarget {
            url: "redis://127.0.0.1:1",
            username: None,
            password: None,
            tls: &tls,
        };
        let e = t.client("collector", "c").err().expect("rejected");
        assert!(e.to_string().contains("rediss://"), "{e}");
    }
}
