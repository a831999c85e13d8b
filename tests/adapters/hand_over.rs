//! `negotiate_with`: libpq's attempt plan up to the StartupMessage, the stream then handed to a
//! client library's own start-up code (tokio-postgres's `connect_raw`), against PostgreSQL 15.
//! The library's refusal, reported back as the server's ErrorResponse, makes the plan fall back
//! as libpq's does.
#![cfg(feature = "tokio")]

use crate::support::pg::Postgres;

use pgssl::io::AuthFailure;
use pgssl::tls::ClientTlsConfig;
use pgssl::wire::ErrorResponse;
use tokio_postgres::{NoTls, SimpleQueryMessage};

/// The server's refusal as tokio-postgres reports it, as pgssl's plan takes it.
fn refusal(e: tokio_postgres::Error) -> AuthFailure {
    match e.as_db_error() {
        Some(db) => AuthFailure::Server(ErrorResponse::fatal(db.code().code(), db.message())),
        None => AuthFailure::Abort(std::io::Error::other(e.to_string()).into()),
    }
}

/// Connects with `conninfo` through `negotiate_with` and tokio-postgres's `connect_raw`;
/// returns pg_stat_ssl's `ssl` for the session and how many connections the plan made.
fn ssl_in_use(conninfo: &str) -> Result<(String, u32), String> {
    let config = ClientTlsConfig::from_conninfo(conninfo).map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pg = tokio_postgres::Config::new().user("postgres").to_owned();
        let (client, connections) = pgssl::io::tokio::negotiate_with(&config, async |n| {
            let (client, connection) = pg.connect_raw(n.stream, NoTls).await.map_err(refusal)?;
            tokio::spawn(connection);
            Ok((client, n.connections))
        })
        .await
        .map_err(|e| e.to_string())?;
        let rows = client
            .simple_query("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
            .await
            .map_err(|e| e.to_string())?;
        let ssl = rows
            .iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                _ => None,
            })
            .ok_or("no row")?;
        Ok((ssl, connections))
    })
}

#[test]
fn tokio_postgres_runs_its_start_up_over_the_negotiated_stream_with_libpq_fallbacks() {
    // TLS connections are refused by pg_hba.conf, plaintext ones let in: prefer falls back over
    // a new connection after the server's FATAL, as libpq does; require does not.
    let pg = Postgres::builder("server-cn-only+server_ca.crt", "server-cn-only.key")
        .hba("hostssl all all 127.0.0.1/32 reject\nhostnossl all all 127.0.0.1/32 trust\n")
        .start();
    let base = format!("host=127.0.0.1 port={} user=postgres", pg.port);
    assert_eq!(
        ssl_in_use(&format!("{base} sslmode=prefer")),
        Ok(("f".to_owned(), 2))
    );
    assert_eq!(
        ssl_in_use(&format!("{base} sslmode=disable")),
        Ok(("f".to_owned(), 1))
    );
    let e = ssl_in_use(&format!("{base} sslmode=require")).unwrap_err();
    assert!(e.contains("pg_hba.conf rejects connection"), "{e}");

    // And the other way round: TLS let in, plaintext refused; allow starts in plaintext.
    let pg = Postgres::builder("server-cn-only+server_ca.crt", "server-cn-only.key")
        .hba("hostnossl all all 127.0.0.1/32 reject\nhostssl all all 127.0.0.1/32 trust\n")
        .start();
    let base = format!("host=127.0.0.1 port={} user=postgres", pg.port);
    assert_eq!(
        ssl_in_use(&format!("{base} sslmode=allow")),
        Ok(("t".to_owned(), 2))
    );
    assert_eq!(
        ssl_in_use(&format!("{base} sslmode=require")),
        Ok(("t".to_owned(), 1))
    );
}
