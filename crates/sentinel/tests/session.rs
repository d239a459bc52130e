//! The Sentinel state machine in memory: every command, authentication, RESP3, pub/sub and
//! garbage, with replies checked against real Sentinel's shapes and error texts.

use std::sync::Arc;

use resp::Value;
use sentinel::{
    Addr, CloseReason, Credentials, Flow, PeerSentinel, RequestError, SentinelId, Session,
    SessionLimits, View, ViewChanges,
};

fn view() -> View {
    View {
        master_name: "georep".into(),
        epoch: 7,
        primary_known: true,
        primary: Addr::new("127.0.0.1", 6379),
        replicas: vec![Addr::new("127.0.0.1", 6380)],
        myid: SentinelId::derive("georep/us-east-1"),
        sentinels: vec![PeerSentinel {
            id: SentinelId::derive("georep/eu-central-1"),
            addr: Addr::new("10.0.0.2", 26379),
        }],
    }
}

fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    let refs: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    resp::encode(&refs, &mut out);
    out
}

struct Client {
    session: Session,
    view: View,
}

impl Client {
    fn new() -> Self {
        Self::with_auth(None)
    }

    fn with_auth(auth: Option<(&str, &str)>) -> Self {
        let auth = auth.map(|(user, password)| {
            Arc::new(Credentials {
                user: user.into(),
                password: password.into(),
            })
        });
        Self {
            session: Session::new(42, auth, SessionLimits::default()),
            view: view(),
        }
    }

    /// Raw reply bytes of one command.
    fn raw(&mut self, args: &[&str]) -> Vec<u8> {
        let mut input = encode(args);
        let mut out = Vec::new();
        let flow = self.session.feed(&mut input, &self.view, &mut out);
        assert!(input.is_empty());
        assert!(
            matches!(flow, Flow::Continue | Flow::Close(CloseReason::Quit)),
            "{flow:?}"
        );
        out
    }

    /// All RESP2 replies of one command.
    fn replies(&mut self, args: &[&str]) -> Vec<Value> {
        let out = self.raw(args);
        let mut at = 0;
        let mut values = Vec::new();
        while at < out.len() {
            let (v, used) = resp::decode(&out[at..]).unwrap().expect("complete reply");
            values.push(v);
            at += used;
        }
        values
    }

    /// The single RESP2 reply of one command.
    fn cmd(&mut self, args: &[&str]) -> Value {
        let mut all = self.replies(args);
        assert_eq!(all.len(), 1, "{args:?} gave {all:?}");
        all.remove(0)
    }
}

fn bulk(s: &str) -> Value {
    Value::Bulk(Some(s.as_bytes().to_vec()))
}

fn err(s: &str) -> Value {
    Value::Error(s.into())
}

fn ok() -> Value {
    Value::Simple("OK".into())
}

/// A RESP2 map reply (a flat array) as pairs of text.
fn pairs(v: &Value) -> Vec<(String, String)> {
    let Value::Array(Some(items)) = v else {
        panic!("not an array: {v:?}")
    };
    assert_eq!(items.len() % 2, 0);
    items
        .chunks(2)
        .map(|kv| (kv[0].text().unwrap(), kv[1].text().unwrap()))
        .collect()
}

fn get<'a>(pairs: &'a [(String, String)], key: &str) -> &'a str {
    &pairs
        .iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("no {key}"))
        .1
}

#[test]
fn ping_and_role_and_myid() {
    let mut c = Client::new();
    assert_eq!(c.cmd(&["PING"]), Value::Simple("PONG".into()));
    assert_eq!(c.cmd(&["ping", "hi"]), bulk("hi"));
    assert_eq!(
        c.cmd(&["PING", "a", "b"]),
        err("ERR wrong number of arguments for 'ping' command")
    );
    assert_eq!(
        c.cmd(&["ROLE"]),
        Value::Array(Some(vec![
            bulk("sentinel"),
            Value::Array(Some(vec![bulk("georep")]))
        ]))
    );
    assert_eq!(
        c.cmd(&["ROLE", "x"]),
        err("ERR wrong number of arguments for 'role' command")
    );
    let id = c.cmd(&["SENTINEL", "MYID"]).text().unwrap();
    assert_eq!(id.len(), 40);
    assert!(id.chars().all(|ch| ch.is_ascii_hexdigit()));
    assert_eq!(id, SentinelId::derive("georep/us-east-1").as_str());
}

#[test]
fn get_master_addr_by_name_answers_the_view_and_null_for_other_names() {
    let mut c = Client::new();
    assert_eq!(
        c.cmd(&["SENTINEL", "get-master-addr-by-name", "georep"]),
        Value::Array(Some(vec![bulk("127.0.0.1"), bulk("6379")]))
    );
    // Sentinel answers an unknown name here with a null array, not an error.
    assert_eq!(
        c.cmd(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "other"]),
        Value::Array(None)
    );
    assert_eq!(
        c.cmd(&["SENTINEL", "get-master-addr-by-name"]),
        err("ERR wrong number of arguments for 'sentinel|get-master-addr-by-name' command")
    );
    c.view.primary = Addr::new("primary.eu.example", 16379);
    assert_eq!(
        c.cmd(&["SENTINEL", "get-master-addr-by-name", "georep"]),
        Value::Array(Some(vec![bulk("primary.eu.example"), bulk("16379")]))
    );
}

#[test]
fn masters_and_master_have_the_fields_clients_check() {
    let mut c = Client::new();
    let Value::Array(Some(masters)) = c.cmd(&["SENTINEL", "MASTERS"]) else {
        panic!()
    };
    assert_eq!(masters.len(), 1);
    let m = pairs(&masters[0]);
    assert_eq!(m, pairs(&c.cmd(&["SENTINEL", "master", "georep"])));
    let keys: Vec<&str> = m.iter().map(|(k, _)| k.as_str()).collect();
    // Sentinel's order (sentinel.c addReplySentinelRedisInstance) for a master that is up.
    assert_eq!(
        keys,
        [
            "name",
            "ip",
            "port",
            "runid",
            "flags",
            "link-pending-commands",
            "link-refcount",
            "last-ping-sent",
            "last-ok-ping-reply",
            "last-ping-reply",
            "down-after-milliseconds",
            "info-refresh",
            "role-reported",
            "role-reported-time",
            "config-epoch",
            "num-slaves",
            "num-other-sentinels",
            "quorum",
            "failover-timeout",
            "parallel-syncs"
        ]
    );
    assert_eq!(get(&m, "name"), "georep");
    assert_eq!(get(&m, "ip"), "127.0.0.1");
    assert_eq!(get(&m, "port"), "6379");
    assert_eq!(get(&m, "flags"), "master");
    assert_eq!(get(&m, "role-reported"), "master");
    assert_eq!(get(&m, "config-epoch"), "7");
    assert_eq!(get(&m, "num-slaves"), "1");
    assert_eq!(get(&m, "num-other-sentinels"), "1");
    assert_eq!(get(&m, "quorum"), "2");

    c.view.primary_known = false;
    let m = pairs(&c.cmd(&["SENTINEL", "MASTER", "georep"]));
    assert_eq!(get(&m, "flags"), "s_down,o_down,master");
    get(&m, "s-down-time");
    get(&m, "o-down-time");

    assert_eq!(
        c.cmd(&["SENTINEL", "MASTER", "nope"]),
        err("ERR No such master with that name")
    );
    assert_eq!(
        c.cmd(&["SENTINEL", "MASTERS", "x"]),
        err("ERR wrong number of arguments for 'sentinel|masters' command")
    );
}

#[test]
fn replicas_slaves_and_sentinels() {
    let mut c = Client::new();
    let replicas = c.cmd(&["SENTINEL", "REPLICAS", "georep"]);
    assert_eq!(replicas, c.cmd(&["sentinel", "slaves", "georep"]));
    let Value::Array(Some(replicas)) = replicas else {
        panic!()
    };
    let r = pairs(&replicas[0]);
    assert_eq!(get(&r, "name"), "127.0.0.1:6380");
    assert_eq!(get(&r, "port"), "6380");
    assert_eq!(get(&r, "flags"), "slave");
    assert_eq!(get(&r, "master-link-status"), "ok");
    assert_eq!(get(&r, "master-port"), "6379");

    let Value::Array(Some(sentinels)) = c.cmd(&["SENTINEL", "SENTINELS", "georep"]) else {
        panic!()
    };
    let s = pairs(&sentinels[0]);
    assert_eq!(get(&s, "ip"), "10.0.0.2");
    assert_eq!(get(&s, "port"), "26379");
    assert_eq!(get(&s, "flags"), "sentinel");
    assert_eq!(
        get(&s, "runid"),
        SentinelId::derive("georep/eu-central-1").as_str()
    );

    for sub in ["REPLICAS", "SLAVES", "SENTINELS"] {
        assert_eq!(
            c.cmd(&["SENTINEL", sub, "nope"]),
            err("ERR No such master with that name")
        );
    }
    c.view.replicas.clear();
    assert_eq!(
        c.cmd(&["SENTINEL", "REPLICAS", "georep"]),
        Value::Array(Some(vec![]))
    );
}

#[test]
fn unknown_commands_and_subcommands_get_redis_wording() {
    let mut c = Client::new();
    assert_eq!(
        c.cmd(&["GET", "k"]),
        err("ERR unknown command 'GET', with args beginning with: 'k' ")
    );
    assert_eq!(
        c.cmd(&["FLUSHALL"]),
        err("ERR unknown command 'FLUSHALL', with args beginning with: ")
    );
    assert_eq!(
        c.cmd(&["SENTINEL", "frobnicate"]),
        err("ERR unknown subcommand 'frobnicate'. Try SENTINEL HELP.")
    );
    assert_eq!(
        c.cmd(&["SENTINEL"]),
        err("ERR wrong number of arguments for 'sentinel' command")
    );
    assert_eq!(
        c.cmd(&["client", "kill", "x"]),
        err("ERR unknown subcommand 'kill'. Try CLIENT HELP.")
    );
    let Value::Error(e) = c.cmd(&["SENTINEL", "FAILOVER", "georep"]) else {
        panic!()
    };
    assert!(
        e.starts_with("ERR georep: SENTINEL FAILOVER is not supported"),
        "{e}"
    );
    let Value::Array(Some(help)) = c.cmd(&["SENTINEL", "HELP"]) else {
        panic!()
    };
    assert!(help.len() > 4);
    // Arguments are cut at 128 bytes, and CR/LF cannot break the reply framing.
    let long = "x".repeat(300);
    let Value::Error(e) = c.cmd(&["NOPE", &long, "a\r\nb"]) else {
        panic!()
    };
    assert!(e.len() < 300, "{}", e.len());
}

#[test]
fn client_setname_getname_id_setinfo() {
    let mut c = Client::new();
    assert_eq!(c.cmd(&["CLIENT", "GETNAME"]), Value::Bulk(None));
    assert_eq!(c.cmd(&["CLIENT", "SETNAME", "app-1"]), ok());
    assert_eq!(c.cmd(&["CLIENT", "GETNAME"]), bulk("app-1"));
    assert_eq!(
        c.cmd(&["CLIENT", "SETNAME", "a b"]),
        err("ERR Client names cannot contain spaces, newlines or special characters.")
    );
    assert_eq!(c.cmd(&["CLIENT", "SETNAME", ""]), ok());
    assert_eq!(c.cmd(&["CLIENT", "GETNAME"]), Value::Bulk(None));
    assert_eq!(c.cmd(&["CLIENT", "ID"]), Value::Int(42));
    assert_eq!(c.cmd(&["CLIENT", "SETINFO", "LIB-NAME", "redis-py"]), ok());
    assert_eq!(c.cmd(&["CLIENT", "SETINFO", "lib-ver", "5.2.1"]), ok());
    assert_eq!(
        c.cmd(&["CLIENT", "SETINFO", "color", "red"]),
        err("ERR Unrecognized option 'color'")
    );
    assert_eq!(
        c.cmd(&["CLIENT", "SETINFO", "lib-name", "a b"]),
        err("ERR lib-name cannot contain spaces, newlines or special characters.")
    );
    assert_eq!(
        c.cmd(&["CLIENT", "SETNAME"]),
        err("ERR wrong number of arguments for 'client|setname' command")
    );
}

#[test]
fn without_configured_credentials_auth_behaves_like_a_nopass_default_user() {
    let mut c = Client::new();
    assert!(c.session.is_authenticated());
    assert_eq!(
        c.cmd(&["AUTH", "pw"]),
        err("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
    );
    assert_eq!(c.cmd(&["AUTH", "default", "anything"]), ok());
    assert_eq!(
        c.cmd(&["AUTH", "someone", "pw"]),
        err("WRONGPASS invalid username-password pair or user is disabled.")
    );
}

#[test]
fn with_credentials_everything_but_auth_hello_quit_needs_auth() {
    let mut c = Client::with_auth(Some(("app", "s3cret")));
    assert!(!c.session.is_authenticated());
    let noauth = err("NOAUTH Authentication required.");
    assert_eq!(c.cmd(&["PING"]), noauth);
    assert_eq!(c.cmd(&["SENTINEL", "MASTERS"]), noauth);
    assert_eq!(
        c.cmd(&["SENTINEL", "get-master-addr-by-name", "georep"]),
        noauth
    );
    assert_eq!(c.cmd(&["ROLE"]), noauth);
    assert_eq!(c.cmd(&["SUBSCRIBE", "+switch-master"]), noauth);
    assert_eq!(c.cmd(&["CLIENT", "SETNAME", "x"]), noauth);
    // Existence and arity come first, as in Redis.
    assert_eq!(
        c.cmd(&["GET", "k"]),
        err("ERR unknown command 'GET', with args beginning with: 'k' ")
    );
    let wrongpass = err("WRONGPASS invalid username-password pair or user is disabled.");
    assert_eq!(c.cmd(&["AUTH", "app", "wrong"]), wrongpass);
    assert_eq!(c.cmd(&["AUTH", "other", "s3cret"]), wrongpass);
    // The password-only form is the `default` user's.
    assert_eq!(c.cmd(&["AUTH", "s3cret"]), wrongpass);
    assert_eq!(c.cmd(&["AUTH", "a", "b", "c"]), err("ERR syntax error"));
    assert_eq!(c.cmd(&["PING"]), noauth);
    assert_eq!(
        c.cmd(&["HELLO", "3"]),
        err("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time")
    );
    assert_eq!(c.cmd(&["AUTH", "app", "s3cret"]), ok());
    assert_eq!(c.cmd(&["PING"]), Value::Simple("PONG".into()));
    // A later failed AUTH does not log the client out (Redis keeps the previous user).
    assert_eq!(c.cmd(&["AUTH", "app", "wrong"]), wrongpass);
    assert_eq!(c.cmd(&["PING"]), Value::Simple("PONG".into()));

    let mut d = Client::with_auth(Some(("default", "pw")));
    assert_eq!(d.cmd(&["AUTH", "pw"]), ok());
    assert!(matches!(d.cmd(&["ROLE"]), Value::Array(Some(_))));
}

#[test]
fn hello_negotiates_resp3_with_auth_and_setname() {
    let mut c = Client::with_auth(Some(("app", "s3cret")));
    assert_eq!(
        c.cmd(&["HELLO", "3", "AUTH", "app", "bad"]),
        err("WRONGPASS invalid username-password pair or user is disabled.")
    );
    assert_eq!(
        c.cmd(&["HELLO", "4"]),
        err("NOPROTO unsupported protocol version")
    );
    assert_eq!(
        c.cmd(&["HELLO", "three"]),
        err("ERR Protocol version is not an integer or out of range")
    );
    assert_eq!(
        c.cmd(&["HELLO", "3", "AUTH", "app"]),
        err("ERR Syntax error in HELLO option 'AUTH'")
    );
    let out = c.raw(&["HELLO", "3", "AUTH", "app", "s3cret", "SETNAME", "me"]);
    let text = String::from_utf8(out).unwrap();
    assert_eq!(
        text,
        "%6\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.0.0\r\n\
         $5\r\nproto\r\n:3\r\n$2\r\nid\r\n:42\r\n$4\r\nmode\r\n$8\r\nsentinel\r\n\
         $7\r\nmodules\r\n*0\r\n"
    );
    assert!(c.session.is_authenticated());
    // RESP3 from now on: maps, nulls.
    assert!(c
        .raw(&["SENTINEL", "MASTER", "georep"])
        .starts_with(b"%20\r\n"));
    assert_eq!(
        c.raw(&["SENTINEL", "get-master-addr-by-name", "x"]),
        b"_\r\n"
    );
    assert_eq!(c.raw(&["CLIENT", "GETNAME"]), b"$2\r\nme\r\n");
    let masters = c.raw(&["SENTINEL", "MASTERS"]);
    assert!(masters.starts_with(b"*1\r\n%20\r\n"));
    // HELLO with no version keeps the protocol; HELLO 2 goes back.
    assert!(c.raw(&["HELLO"]).starts_with(b"%6\r\n"));
    let Value::Array(Some(back)) = c.cmd(&["HELLO", "2"]) else {
        panic!()
    };
    assert_eq!(back[4], bulk("proto"));
    assert_eq!(back[5], Value::Int(2));
    assert_eq!(
        c.cmd(&["SENTINEL", "get-master-addr-by-name", "x"]),
        Value::Array(None)
    );
}

fn push(kind: &str, target: &str, n: i64) -> Value {
    Value::Array(Some(vec![bulk(kind), bulk(target), Value::Int(n)]))
}

#[test]
fn subscriptions_and_switch_master_messages_resp2() {
    let mut c = Client::new();
    assert_eq!(
        c.replies(&["SUBSCRIBE", "+switch-master", "+odown"]),
        [
            push("subscribe", "+switch-master", 1),
            push("subscribe", "+odown", 2)
        ]
    );
    assert_eq!(
        c.replies(&["PSUBSCRIBE", "*"]),
        [push("psubscribe", "*", 3)]
    );
    // RESP2 subscribed context: only pub/sub commands, PING and QUIT.
    assert_eq!(
        c.cmd(&["SENTINEL", "MASTERS"]),
        err("ERR Can't execute 'sentinel|masters': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context")
    );
    assert_eq!(
        c.cmd(&["PING"]),
        Value::Array(Some(vec![bulk("pong"), bulk("")]))
    );

    let mut changes = ViewChanges::new(&c.view);
    c.view.epoch = 8;
    assert_eq!(changes.update(&c.view), None, "same address: no event");
    c.view.primary = Addr::new("127.0.0.1", 7000);
    let event = changes.update(&c.view).expect("switch");
    assert_eq!(event.channel, "+switch-master");
    assert_eq!(event.message, "georep 127.0.0.1 6379 127.0.0.1 7000");
    let mut out = Vec::new();
    c.session.publish(&event, &mut out);
    let (first, used) = resp::decode(&out).unwrap().unwrap();
    let (second, rest) = resp::decode(&out[used..]).unwrap().unwrap();
    assert_eq!(used + rest, out.len());
    assert_eq!(
        first,
        Value::Array(Some(vec![
            bulk("message"),
            bulk("+switch-master"),
            bulk("georep 127.0.0.1 6379 127.0.0.1 7000")
        ]))
    );
    assert_eq!(
        second,
        Value::Array(Some(vec![
            bulk("pmessage"),
            bulk("*"),
            bulk("+switch-master"),
            bulk("georep 127.0.0.1 6379 127.0.0.1 7000")
        ]))
    );

    assert_eq!(
        c.replies(&["UNSUBSCRIBE"]),
        [
            push("unsubscribe", "+odown", 2),
            push("unsubscribe", "+switch-master", 1)
        ]
    );
    assert_eq!(
        c.replies(&["PUNSUBSCRIBE", "*", "nope"]),
        [
            push("punsubscribe", "*", 0),
            push("punsubscribe", "nope", 0)
        ]
    );
    assert!(!c.session.is_subscribed());
    assert_eq!(
        c.replies(&["UNSUBSCRIBE"]),
        [Value::Array(Some(vec![
            bulk("unsubscribe"),
            Value::Bulk(None),
            Value::Int(0)
        ]))]
    );
    assert_eq!(c.cmd(&["PING"]), Value::Simple("PONG".into()));
    let mut out = Vec::new();
    c.session.publish(&event, &mut out);
    assert!(out.is_empty(), "no subscription, no message");
}

#[test]
fn resp3_subscriptions_are_pushes_and_allow_other_commands() {
    let mut c = Client::new();
    c.raw(&["HELLO", "3"]);
    assert_eq!(
        c.raw(&["SUBSCRIBE", "+switch-master"]),
        b">3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n"
    );
    assert_eq!(c.raw(&["PING"]), b"+PONG\r\n");
    assert!(c.raw(&["SENTINEL", "MASTERS"]).starts_with(b"*1\r\n%"));
    let event = sentinel::Event {
        channel: "+switch-master".into(),
        message: "m".into(),
    };
    let mut out = Vec::new();
    c.session.publish(&event, &mut out);
    assert_eq!(
        out,
        b">3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$1\r\nm\r\n"
    );
    assert_eq!(
        c.raw(&["UNSUBSCRIBE", "x"]),
        b">3\r\n$11\r\nunsubscribe\r\n$1\r\nx\r\n:1\r\n"
    );
}

#[test]
fn subscriptions_are_bounded() {
    let limits = SessionLimits {
        max_subscriptions: 2,
        ..SessionLimits::default()
    };
    let mut s = Session::new(1, None, limits);
    let mut input = encode(&["SUBSCRIBE", "a", "b", "a", "c"]);
    let mut out = Vec::new();
    s.feed(&mut input, &view(), &mut out);
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.matches("subscribe").count(), 3, "{text}");
    assert!(text.ends_with("-ERR georep: at most 2 subscriptions per connection\r\n"));
}

#[test]
fn switch_master_skips_views_without_a_known_primary() {
    let mut v = view();
    let mut changes = ViewChanges::new(&v);
    v.primary_known = false;
    v.primary = Addr::new("127.0.0.1", 9999);
    assert_eq!(changes.update(&v), None);
    v.primary_known = true;
    v.primary = Addr::new("127.0.0.1", 7000);
    let e = changes.update(&v).unwrap();
    assert_eq!(e.message, "georep 127.0.0.1 6379 127.0.0.1 7000");
    assert_eq!(changes.update(&v), None);
    // Starting without a known primary: the first known one is not a switch.
    v.primary_known = false;
    let mut fresh = ViewChanges::new(&v);
    v.primary_known = true;
    assert_eq!(fresh.update(&v), None);
}

#[test]
fn quit_replies_ok_then_closes() {
    let mut s = Session::new(
        1,
        Some(Arc::new(Credentials {
            user: "u".into(),
            password: "p".into(),
        })),
        SessionLimits::default(),
    );
    let mut input = encode(&["QUIT"]);
    input.extend_from_slice(&encode(&["PING"]));
    let mut out = Vec::new();
    assert_eq!(
        s.feed(&mut input, &view(), &mut out),
        Flow::Close(CloseReason::Quit)
    );
    assert_eq!(out, b"+OK\r\n", "nothing after QUIT runs");
}

#[test]
fn pipelined_and_split_requests() {
    let mut s = Session::new(1, None, SessionLimits::default());
    let mut wire = encode(&["PING"]);
    wire.extend_from_slice(b"sentinel get-master-addr-by-name georep\r\n");
    wire.extend_from_slice(&encode(&["CLIENT", "ID"]));
    let mut all = Vec::new();
    let mut input = Vec::new();
    for byte in wire {
        input.push(byte);
        assert_eq!(s.feed(&mut input, &view(), &mut all), Flow::Continue);
    }
    assert!(input.is_empty());
    assert_eq!(
        String::from_utf8(all).unwrap(),
        "+PONG\r\n*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6379\r\n:1\r\n"
    );
}

#[test]
fn garbage_gets_an_error_then_close() {
    for (garbage, reason) in [
        (&b"*1\r\n:5\r\n"[..], RequestError::ExpectedBulk(b':')),
        (b"*abc\r\n", RequestError::MultibulkLength),
        (b"*1\r\n$-7\r\n", RequestError::BulkLength),
        (b"PING \"open\r\n", RequestError::UnbalancedQuotes),
    ] {
        let mut s = Session::new(1, None, SessionLimits::default());
        let mut input = encode(&["PING"]);
        input.extend_from_slice(garbage);
        let mut out = Vec::new();
        assert_eq!(
            s.feed(&mut input, &view(), &mut out),
            Flow::Close(CloseReason::Protocol(reason))
        );
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, format!("+PONG\r\n-ERR {reason}\r\n"));
        assert!(text.contains("Protocol error"));
        // A closed session answers nothing more.
        let mut more = encode(&["PING"]);
        let mut out = Vec::new();
        assert!(matches!(
            s.feed(&mut more, &view(), &mut out),
            Flow::Close(_)
        ));
        assert!(out.is_empty());
    }
    // An endless line is refused at the size limit, not buffered.
    let mut s = Session::new(1, None, SessionLimits::default());
    let mut input = vec![b'A'; 20_000];
    let mut out = Vec::new();
    assert_eq!(
        s.feed(&mut input, &view(), &mut out),
        Flow::Close(CloseReason::Protocol(RequestError::TooBig))
    );
}
