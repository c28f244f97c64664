//! Token authentication and listener defaults.

use remora_interpose::client::{Client, ConnectError};
use remora_server::supervisor::{Config, Supervisor};
use remora_tests::{start_server, urls};

use crate::helper;

#[test]
fn token_is_required_and_checked() {
    let sup = start_server(&helper(), "token", |c| c.token = Some("s3cret".into()));
    for url in urls(&sup) {
        let e = Client::connect(&url, None).unwrap_err();
        assert!(matches!(e, ConnectError::Handshake { .. }), "{e}");
        assert!(e.to_string().contains("requires a token"), "{e}");
        let e = Client::connect(&url, Some("wrong")).unwrap_err();
        assert!(e.to_string().contains("AUTH_FAILED"), "{e}");
        let c = Client::connect(&url, Some("s3cret")).unwrap();
        c.ping().unwrap();
        c.close().unwrap();
    }
}

#[test]
fn non_loopback_listener_needs_a_token() {
    let cfg = Config::new(vec!["tcp://0.0.0.0:0".parse().unwrap()], (helper().into(), vec!["worker".into()]));
    let e = Supervisor::start(cfg).unwrap_err();
    assert!(e.to_string().contains("token is required"), "{e}");
}
