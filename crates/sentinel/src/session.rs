//! One client connection's state machine: request bytes and the current [`View`] in, reply bytes
//! out. No I/O, no clock.
//!
//! Commands are checked in Redis's order: the command exists, its arity, authentication
//! (`-NOAUTH`), the RESP2 pub/sub context, then the command runs. Error texts are Redis's own
//! (src/server.c, networking.c, acl.c, sentinel.c), so client libraries classify them as they
//! would a real Sentinel's.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::glob;
use crate::reply::{Protocol, Reply};
use crate::request::{self, RequestError, RequestLimits};
use crate::view::{Addr, View};

/// The version `HELLO` reports: the Redis release whose Sentinel replies we follow.
pub const REPORTED_VERSION: &str = "7.0.0";

/// The one user allowed on the Sentinel port. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// ACL user name. `default` also accepts the password-only `AUTH <password>` form, as in
    /// Redis (where `requirepass` is the `default` user's password).
    pub user: String,
    /// Its password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Credentials {{ user: {:?}, password: MASKED }}",
            self.user
        )
    }
}

/// Per-connection bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Bounds on one request.
    pub request: RequestLimits,
    /// Most channels plus patterns one connection may subscribe to.
    pub max_subscriptions: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            request: RequestLimits::default(),
            max_subscriptions: 128,
        }
    }
}

/// What the driver does after feeding input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Send the output and keep reading.
    Continue,
    /// Send the output, then close: the client sent `QUIT` or bytes that are not a request.
    Close(CloseReason),
}

/// Why a session ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent `QUIT`.
    Quit,
    /// The client sent something that is not a request; it was told why.
    Protocol(RequestError),
}

/// Something the driver may want to count or log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    /// `AUTH` or `HELLO … AUTH` with a wrong user or password.
    AuthFailed,
    /// A command refused with `-NOAUTH`.
    NoAuth,
    /// A command we do not know.
    UnknownCommand,
}

/// A `+switch-master`-style event: published on `channel` to subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The channel, e.g. `+switch-master`.
    pub channel: String,
    /// The payload, e.g. `georep 127.0.0.1 6379 127.0.0.1 6380`.
    pub message: String,
}

/// Turns successive views into the events Sentinel publishes.
///
/// A real Sentinel publishes `+switch-master <name> <old-ip> <old-port> <new-ip> <new-port>` when
/// a failover ends. Here that is when a known primary differs from the last known one: views
/// without a known primary in between are skipped, so a fenced interval ends with one event from
/// the last primary to the next, or none if it came back at the same address.
#[derive(Debug, Clone)]
pub struct ViewChanges {
    last_known: Option<Addr>,
}

impl ViewChanges {
    /// Starts from the view a connection first saw.
    pub fn new(view: &View) -> Self {
        Self {
            last_known: view.primary_known.then(|| view.primary.clone()),
        }
    }

    /// The events between the previous view and `view`.
    pub fn update(&mut self, view: &View) -> Option<Event> {
        if !view.primary_known {
            return None;
        }
        let previous = self.last_known.replace(view.primary.clone())?;
        (previous != view.primary).then(|| Event {
            channel: "+switch-master".to_owned(),
            message: format!(
                "{} {} {} {} {}",
                view.master_name,
                previous.host,
                previous.port,
                view.primary.host,
                view.primary.port
            ),
        })
    }
}

/// One client's connection state.
#[derive(Debug)]
pub struct Session {
    id: u64,
    auth: Option<Arc<Credentials>>,
    limits: SessionLimits,
    protocol: Protocol,
    authenticated: bool,
    name: Option<Vec<u8>>,
    channels: BTreeSet<Vec<u8>>,
    patterns: BTreeSet<Vec<u8>>,
    notes: Vec<Note>,
    closed: bool,
}

impl Session {
    /// A new connection with client id `id` (what `CLIENT ID` and `HELLO` report). With `auth`,
    /// every command but `AUTH`, `HELLO` and `QUIT` needs authentication first.
    pub fn new(id: u64, auth: Option<Arc<Credentials>>, limits: SessionLimits) -> Self {
        Self {
            id,
            authenticated: auth.is_none(),
            auth,
            limits,
            protocol: Protocol::Resp2,
            name: None,
            channels: BTreeSet::new(),
            patterns: BTreeSet::new(),
            notes: Vec::new(),
            closed: false,
        }
    }

    /// The protocol negotiated so far.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Whether the client has authenticated (always, without configured credentials).
    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// Whether the client holds subscriptions (it may then legitimately stay silent for long).
    pub fn is_subscribed(&self) -> bool {
        !self.channels.is_empty() || !self.patterns.is_empty()
    }

    /// Notes since the last call, for metrics and logs.
    pub fn take_notes(&mut self) -> Vec<Note> {
        std::mem::take(&mut self.notes)
    }

    /// Runs every complete request at the front of `input`, removing it, and appends the replies
    /// to `out`. An incomplete request stays in `input` for the next call.
    pub fn feed(&mut self, input: &mut Vec<u8>, view: &View, out: &mut Vec<u8>) -> Flow {
        if self.closed {
            input.clear();
            return Flow::Close(CloseReason::Quit);
        }
        let mut used = 0;
        let flow = loop {
            match request::decode(&input[used..], self.limits.request) {
                Ok(None) => break Flow::Continue,
                Ok(Some((args, n))) => {
                    used += n;
                    if let Flow::Close(reason) = self.handle(&args, view, out) {
                        break Flow::Close(reason);
                    }
                }
                Err(e) => {
                    self.reply(&Reply::err(e), out);
                    break Flow::Close(CloseReason::Protocol(e));
                }
            }
        };
        if let Flow::Close(_) = flow {
            self.closed = true;
            input.clear();
        } else {
            input.drain(..used);
        }
        flow
    }

    /// Appends `event` to `out` if this connection subscribed to its channel or a matching
    /// pattern (one message per match, as Redis sends).
    pub fn publish(&self, event: &Event, out: &mut Vec<u8>) {
        let channel = event.channel.as_bytes();
        let message = Reply::text(&event.message);
        if self.channels.contains(channel) {
            let push = Reply::Push(vec![
                Reply::text("message"),
                Reply::text(channel),
                message.clone(),
            ]);
            self.reply(&push, out);
        }
        for pattern in self.patterns.iter().filter(|p| glob::matches(p, channel)) {
            let push = Reply::Push(vec![
                Reply::text("pmessage"),
                Reply::text(pattern),
                Reply::text(channel),
                message.clone(),
            ]);
            self.reply(&push, out);
        }
    }

    /// Runs one request (its arguments, already decoded).
    pub fn handle(&mut self, args: &[Vec<u8>], view: &View, out: &mut Vec<u8>) -> Flow {
        let Some(first) = args.first() else {
            return Flow::Continue;
        };
        let name = first.to_ascii_lowercase();
        let Some(command) = Command::find(&name, args) else {
            self.notes.push(Note::UnknownCommand);
            self.reply(&unknown_command(args), out);
            return Flow::Continue;
        };
        if let Err(e) = command.check(args) {
            if matches!(command, Command::Unknown) {
                self.notes.push(Note::UnknownCommand);
            }
            self.reply(&e, out);
            return Flow::Continue;
        }
        if !self.authenticated && !command.no_auth() {
            self.notes.push(Note::NoAuth);
            self.reply(&Reply::Error("NOAUTH Authentication required.".into()), out);
            return Flow::Continue;
        }
        if self.protocol == Protocol::Resp2 && self.is_subscribed() && !command.pubsub_ok() {
            let e = Reply::err(format!(
                "Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / \
                 RESET are allowed in this context",
                command.full_name(args)
            ));
            self.reply(&e, out);
            return Flow::Continue;
        }
        self.run(command, args, view, out)
    }

    fn run(&mut self, command: Command, args: &[Vec<u8>], view: &View, out: &mut Vec<u8>) -> Flow {
        let reply = match command {
            Command::Ping => self.ping(args),
            Command::Auth => self.auth_command(args),
            Command::Hello => self.hello(args),
            Command::Quit => {
                self.reply(&Reply::Simple("OK"), out);
                return Flow::Close(CloseReason::Quit);
            }
            Command::Role => Reply::Array(vec![
                Reply::text("sentinel"),
                Reply::Array(vec![Reply::text(&view.master_name)]),
            ]),
            Command::Client(sub) => self.client(sub, args),
            Command::Sentinel(sub) => sentinel(sub, args, view),
            Command::Subscribe => return self.subscribe(args, false, out),
            Command::Psubscribe => return self.subscribe(args, true, out),
            Command::Unsubscribe => return self.unsubscribe(args, false, out),
            Command::Punsubscribe => return self.unsubscribe(args, true, out),
            Command::Unknown => unreachable!("check() refuses unknown commands"),
        };
        self.reply(&reply, out);
        Flow::Continue
    }

    fn reply(&self, reply: &Reply, out: &mut Vec<u8>) {
        reply.encode(self.protocol, out);
    }

    fn ping(&self, args: &[Vec<u8>]) -> Reply {
        // Redis's arity for PING is "at least one"; the command itself takes at most one argument.
        if args.len() > 2 {
            return Reply::err("wrong number of arguments for 'ping' command");
        }
        if self.protocol == Protocol::Resp2 && self.is_subscribed() {
            let echo = args.get(1).cloned().unwrap_or_default();
            return Reply::Array(vec![Reply::text("pong"), Reply::Bulk(echo)]);
        }
        match args.get(1) {
            Some(echo) => Reply::Bulk(echo.clone()),
            None => Reply::Simple("PONG"),
        }
    }

    fn auth_command(&mut self, args: &[Vec<u8>]) -> Reply {
        if args.len() > 3 {
            return Reply::err("syntax error");
        }
        let (user, password) = match args {
            [_, password] => {
                if self.auth.is_none() {
                    return Reply::err(
                        "AUTH <password> called without any password configured for the \
                         default user. Are you sure your configuration is correct?",
                    );
                }
                (&b"default"[..], password)
            }
            [_, user, password] => (&user[..], password),
            _ => unreachable!("arity checked"),
        };
        match self.authenticate(user, password) {
            Ok(()) => Reply::Simple("OK"),
            Err(e) => e,
        }
    }

    fn authenticate(&mut self, user: &[u8], password: &[u8]) -> Result<(), Reply> {
        let ok = match &self.auth {
            // No credentials configured: like Redis's `default` user with `nopass`.
            None => user == b"default",
            Some(c) => {
                // Compare both in full, so timing does not tell which one was wrong.
                let user_ok = constant_time_eq(user, c.user.as_bytes());
                let password_ok = constant_time_eq(password, c.password.as_bytes());
                user_ok & password_ok
            }
        };
        if ok {
            self.authenticated = true;
            Ok(())
        } else {
            self.notes.push(Note::AuthFailed);
            Err(Reply::Error(
                "WRONGPASS invalid username-password pair or user is disabled.".into(),
            ))
        }
    }

    fn hello(&mut self, args: &[Vec<u8>]) -> Reply {
        let mut protocol = None;
        let mut rest = &args[1..];
        if let Some((version, tail)) = rest.split_first() {
            protocol = match parse_int(version) {
                None => return Reply::err("Protocol version is not an integer or out of range"),
                Some(2) => Some(Protocol::Resp2),
                Some(3) => Some(Protocol::Resp3),
                Some(_) => return Reply::Error("NOPROTO unsupported protocol version".into()),
            };
            rest = tail;
        }
        let mut credentials = None;
        let mut name = None;
        while let Some((option, tail)) = rest.split_first() {
            let lower = option.to_ascii_lowercase();
            match (lower.as_slice(), tail) {
                (b"auth", [user, password, tail @ ..]) => {
                    credentials = Some((user, password));
                    rest = tail;
                }
                (b"setname", [client_name, tail @ ..]) => {
                    if !valid_client_attr(client_name) {
                        return Reply::err(
                            "Client names cannot contain spaces, newlines or special characters.",
                        );
                    }
                    name = Some(client_name);
                    rest = tail;
                }
                _ => {
                    return Reply::err(format!(
                        "Syntax error in HELLO option '{}'",
                        String::from_utf8_lossy(option)
                    ))
                }
            }
        }
        if let Some((user, password)) = credentials {
            if let Err(e) = self.authenticate(user, password) {
                return e;
            }
        }
        if !self.authenticated {
            self.notes.push(Note::NoAuth);
            return Reply::Error(
                "NOAUTH HELLO must be called with the client already authenticated, otherwise \
                 the HELLO AUTH <user> <pass> option can be used to authenticate the client and \
                 select the RESP protocol version at the same time"
                    .into(),
            );
        }
        if let Some(name) = name {
            self.name = (!name.is_empty()).then(|| name.clone());
        }
        if let Some(p) = protocol {
            self.protocol = p;
        }
        Reply::Map(vec![
            (Reply::text("server"), Reply::text("redis")),
            (Reply::text("version"), Reply::text(REPORTED_VERSION)),
            (Reply::text("proto"), Reply::Int(self.protocol.version())),
            (Reply::text("id"), Reply::Int(self.id as i64)),
            (Reply::text("mode"), Reply::text("sentinel")),
            (Reply::text("modules"), Reply::Array(Vec::new())),
        ])
    }

    fn client(&mut self, sub: ClientSub, args: &[Vec<u8>]) -> Reply {
        match sub {
            ClientSub::SetName => {
                let name = &args[2];
                if !valid_client_attr(name) {
                    return Reply::err(
                        "Client names cannot contain spaces, newlines or special characters.",
                    );
                }
                self.name = (!name.is_empty()).then(|| name.clone());
                Reply::Simple("OK")
            }
            ClientSub::GetName => match &self.name {
                Some(n) => Reply::Bulk(n.clone()),
                None => Reply::NullBulk,
            },
            ClientSub::Id => Reply::Int(self.id as i64),
            ClientSub::SetInfo => {
                let attr = String::from_utf8_lossy(&args[2]);
                if !attr.eq_ignore_ascii_case("lib-name") && !attr.eq_ignore_ascii_case("lib-ver") {
                    return Reply::err(format!("Unrecognized option '{attr}'"));
                }
                if !valid_client_attr(&args[3]) {
                    return Reply::err(format!(
                        "{attr} cannot contain spaces, newlines or special characters."
                    ));
                }
                // Accepted and not kept: nothing here reports client libraries.
                Reply::Simple("OK")
            }
            ClientSub::Help => help(
                "CLIENT",
                &[
                    "GETNAME",
                    "    Return the name of the current connection.",
                    "ID",
                    "    Return the ID of the current connection.",
                    "SETINFO <option> <value>",
                    "    Set client meta attr. Options are: LIB-NAME, LIB-VER.",
                    "SETNAME <name>",
                    "    Assign the name <name> to the current connection.",
                ],
            ),
        }
    }

    fn subscribe(&mut self, args: &[Vec<u8>], pattern: bool, out: &mut Vec<u8>) -> Flow {
        let kind = if pattern { "psubscribe" } else { "subscribe" };
        for target in &args[1..] {
            let already = self.channels.contains(target) && !pattern
                || self.patterns.contains(target) && pattern;
            if !already
                && self.channels.len() + self.patterns.len() >= self.limits.max_subscriptions
            {
                let e = Reply::err(format!(
                    "georep: at most {} subscriptions per connection",
                    self.limits.max_subscriptions
                ));
                self.reply(&e, out);
                return Flow::Continue;
            }
            if pattern {
                self.patterns.insert(target.clone());
            } else {
                self.channels.insert(target.clone());
            }
            let push = Reply::Push(vec![
                Reply::text(kind),
                Reply::Bulk(target.clone()),
                Reply::Int(self.subscription_count()),
            ]);
            self.reply(&push, out);
        }
        Flow::Continue
    }

    fn unsubscribe(&mut self, args: &[Vec<u8>], pattern: bool, out: &mut Vec<u8>) -> Flow {
        let kind = if pattern {
            "punsubscribe"
        } else {
            "unsubscribe"
        };
        let targets: Vec<Vec<u8>> = match (&args[1..], pattern) {
            ([], false) => self.channels.iter().cloned().collect(),
            ([], true) => self.patterns.iter().cloned().collect(),
            (some, _) => some.to_vec(),
        };
        if targets.is_empty() {
            let push = Reply::Push(vec![
                Reply::text(kind),
                Reply::NullBulk,
                Reply::Int(self.subscription_count()),
            ]);
            self.reply(&push, out);
        }
        for target in targets {
            if pattern {
                self.patterns.remove(&target);
            } else {
                self.channels.remove(&target);
            }
            let push = Reply::Push(vec![
                Reply::text(kind),
                Reply::Bulk(target),
                Reply::Int(self.subscription_count()),
            ]);
            self.reply(&push, out);
        }
        Flow::Continue
    }

    fn subscription_count(&self) -> i64 {
        (self.channels.len() + self.patterns.len()) as i64
    }
}

/// The commands of this Sentinel, with their Redis arity (negative: at least that many).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Ping,
    Auth,
    Hello,
    Quit,
    Role,
    Client(ClientSub),
    Sentinel(SentinelSub),
    Subscribe,
    Psubscribe,
    Unsubscribe,
    Punsubscribe,
    /// A container command (`CLIENT`, `SENTINEL`) with an unknown subcommand.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientSub {
    SetName,
    GetName,
    Id,
    SetInfo,
    Help,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SentinelSub {
    Masters,
    Master,
    Replicas,
    Sentinels,
    Myid,
    GetMasterAddrByName,
    Help,
    /// A real Sentinel subcommand that changes or inspects Sentinel's own monitoring, which
    /// georep's agents do instead.
    Unsupported,
}

impl Command {
    /// `None` for an unknown command; `Some(Unknown)` for a known container with a bad or
    /// missing subcommand (reported by [`Command::check`]).
    fn find(name: &[u8], args: &[Vec<u8>]) -> Option<Self> {
        let sub = || args.get(1).map(|s| s.to_ascii_lowercase());
        Some(match name {
            b"ping" => Self::Ping,
            b"auth" => Self::Auth,
            b"hello" => Self::Hello,
            b"quit" => Self::Quit,
            b"role" => Self::Role,
            b"subscribe" => Self::Subscribe,
            b"psubscribe" => Self::Psubscribe,
            b"unsubscribe" => Self::Unsubscribe,
            b"punsubscribe" => Self::Punsubscribe,
            b"client" => match sub().as_deref() {
                Some(b"setname") => Self::Client(ClientSub::SetName),
                Some(b"getname") => Self::Client(ClientSub::GetName),
                Some(b"id") => Self::Client(ClientSub::Id),
                Some(b"setinfo") => Self::Client(ClientSub::SetInfo),
                Some(b"help") => Self::Client(ClientSub::Help),
                _ => Self::Unknown,
            },
            b"sentinel" => match sub().as_deref() {
                Some(b"masters") => Self::Sentinel(SentinelSub::Masters),
                Some(b"master") => Self::Sentinel(SentinelSub::Master),
                Some(b"replicas" | b"slaves") => Self::Sentinel(SentinelSub::Replicas),
                Some(b"sentinels") => Self::Sentinel(SentinelSub::Sentinels),
                Some(b"myid") => Self::Sentinel(SentinelSub::Myid),
                Some(b"get-master-addr-by-name") => {
                    Self::Sentinel(SentinelSub::GetMasterAddrByName)
                }
                Some(b"help") => Self::Sentinel(SentinelSub::Help),
                Some(
                    b"ckquorum"
                    | b"config"
                    | b"debug"
                    | b"failover"
                    | b"flushconfig"
                    | b"info-cache"
                    | b"is-master-down-by-addr"
                    | b"monitor"
                    | b"pending-scripts"
                    | b"remove"
                    | b"reset"
                    | b"set"
                    | b"simulate-failure",
                ) => Self::Sentinel(SentinelSub::Unsupported),
                _ => Self::Unknown,
            },
            _ => return None,
        })
    }

    /// Redis's arity: exact when positive, a minimum when negative.
    fn arity(self) -> i32 {
        match self {
            Self::Ping | Self::Hello | Self::Quit | Self::Unsubscribe | Self::Punsubscribe => -1,
            Self::Auth | Self::Subscribe | Self::Psubscribe => -2,
            Self::Role => 1,
            Self::Client(ClientSub::SetName) => 3,
            Self::Client(ClientSub::GetName | ClientSub::Id | ClientSub::Help) => 2,
            Self::Client(ClientSub::SetInfo) => 4,
            Self::Sentinel(SentinelSub::Masters | SentinelSub::Myid | SentinelSub::Help) => 2,
            Self::Sentinel(
                SentinelSub::Master
                | SentinelSub::Replicas
                | SentinelSub::Sentinels
                | SentinelSub::GetMasterAddrByName,
            ) => 3,
            Self::Sentinel(SentinelSub::Unsupported) => -2,
            Self::Unknown => -2,
        }
    }

    fn check(self, args: &[Vec<u8>]) -> Result<(), Reply> {
        let container = args[0].to_ascii_lowercase();
        if self == Self::Unknown {
            return Err(match args.get(1) {
                None => Reply::err(format!(
                    "wrong number of arguments for '{}' command",
                    String::from_utf8_lossy(&container)
                )),
                Some(sub) => Reply::err(format!(
                    "unknown subcommand '{}'. Try {} HELP.",
                    truncate(sub, 128),
                    String::from_utf8_lossy(&args[0]).to_ascii_uppercase()
                )),
            });
        }
        let arity = self.arity();
        let n = args.len() as i32;
        if (arity > 0 && n != arity) || n < -arity {
            return Err(Reply::err(format!(
                "wrong number of arguments for '{}' command",
                self.full_name(args)
            )));
        }
        Ok(())
    }

    /// Redis's `fullname`: `ping`, or `sentinel|masters` for a subcommand.
    fn full_name(self, args: &[Vec<u8>]) -> String {
        let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
        match self {
            Self::Client(_) | Self::Sentinel(_) => format!(
                "{name}|{}",
                String::from_utf8_lossy(&args[1]).to_ascii_lowercase()
            ),
            _ => name,
        }
    }

    /// Allowed before authentication (Redis's `no-auth` flag).
    fn no_auth(self) -> bool {
        matches!(self, Self::Auth | Self::Hello | Self::Quit)
    }

    /// Allowed while subscribed on RESP2.
    fn pubsub_ok(self) -> bool {
        matches!(
            self,
            Self::Ping
                | Self::Quit
                | Self::Subscribe
                | Self::Psubscribe
                | Self::Unsubscribe
                | Self::Punsubscribe
        )
    }
}

fn sentinel(sub: SentinelSub, args: &[Vec<u8>], view: &View) -> Reply {
    let named = || {
        args.get(2)
            .is_some_and(|n| n == view.master_name.as_bytes())
    };
    let no_such_master = || Reply::err("No such master with that name");
    match sub {
        SentinelSub::Masters => Reply::Array(vec![master_state(view)]),
        SentinelSub::Master if named() => master_state(view),
        SentinelSub::Replicas if named() => Reply::Array(
            view.replicas
                .iter()
                .map(|r| replica_state(r, view))
                .collect(),
        ),
        SentinelSub::Sentinels if named() => Reply::Array(
            view.sentinels
                .iter()
                .map(|s| sentinel_state(s.id.as_str(), &s.addr, view))
                .collect(),
        ),
        SentinelSub::Master | SentinelSub::Replicas | SentinelSub::Sentinels => no_such_master(),
        SentinelSub::Myid => Reply::text(view.myid.as_str()),
        // Sentinel answers an unknown name here with a null, not an error.
        SentinelSub::GetMasterAddrByName if named() => Reply::Array(vec![
            Reply::text(&view.primary.host),
            Reply::text(view.primary.port.to_string()),
        ]),
        SentinelSub::GetMasterAddrByName => Reply::NullArray,
        SentinelSub::Help => help(
            "SENTINEL",
            &[
                "GET-MASTER-ADDR-BY-NAME <master-name>",
                "    Return the ip and port number of the master with that name.",
                "MASTER <master-name>",
                "    Show the state and info of the specified master.",
                "MASTERS",
                "    Show a list of monitored masters and their state.",
                "MYID",
                "    Return the ID of the Sentinel instance.",
                "REPLICAS <master-name>",
                "    Show a list of replicas for this master and their state.",
                "SENTINELS <master-name>",
                "    Show a list of Sentinel instances for this master and their state.",
            ],
        ),
        SentinelSub::Unsupported => Reply::err(format!(
            "georep: SENTINEL {} is not supported: georep agents, not Sentinels, choose and \
             move the primary (see `georep failover`)",
            String::from_utf8_lossy(&args[1]).to_ascii_uppercase()
        )),
    }
}

/// Sentinel timings we do not measure: Sentinel's defaults, so clients that read them see sane
/// values.
const DOWN_AFTER_MS: i64 = 30_000;
const FAILOVER_TIMEOUT_MS: i64 = 180_000;

fn field(name: &str, value: impl std::fmt::Display) -> (Reply, Reply) {
    (Reply::text(name), Reply::text(value.to_string()))
}

/// The fields every instance has, in Sentinel's order (sentinel.c addReplySentinelRedisInstance).
fn common_fields(name: &str, addr: &Addr, runid: &str, flags: &str) -> Vec<(Reply, Reply)> {
    vec![
        field("name", name),
        field("ip", &addr.host),
        field("port", addr.port),
        field("runid", runid),
        field("flags", flags),
        field("link-pending-commands", 0),
        field("link-refcount", 1),
        field("last-ping-sent", 0),
        field("last-ok-ping-reply", 0),
        field("last-ping-reply", 0),
    ]
}

fn master_state(view: &View) -> Reply {
    let flags = if view.primary_known {
        "master"
    } else {
        "s_down,o_down,master"
    };
    let mut f = common_fields(&view.master_name, &view.primary, "", flags);
    if !view.primary_known {
        f.push(field("s-down-time", 0));
        f.push(field("o-down-time", 0));
    }
    let voters = view.sentinels.len() + 1;
    f.extend([
        field("down-after-milliseconds", DOWN_AFTER_MS),
        field("info-refresh", 0),
        field("role-reported", "master"),
        field("role-reported-time", 0),
        field("config-epoch", view.epoch),
        field("num-slaves", view.replicas.len()),
        field("num-other-sentinels", view.sentinels.len()),
        field("quorum", voters / 2 + 1),
        field("failover-timeout", FAILOVER_TIMEOUT_MS),
        field("parallel-syncs", 1),
    ]);
    Reply::Map(f)
}

fn replica_state(addr: &Addr, view: &View) -> Reply {
    let mut f = common_fields(&addr.to_string(), addr, "", "slave");
    f.extend([
        field("down-after-milliseconds", DOWN_AFTER_MS),
        field("info-refresh", 0),
        field("role-reported", "slave"),
        field("role-reported-time", 0),
        field("master-link-down-time", 0),
        field(
            "master-link-status",
            if view.primary_known { "ok" } else { "err" },
        ),
        field("master-host", &view.primary.host),
        field("master-port", view.primary.port),
        field("slave-priority", 100),
        field("slave-repl-offset", 0),
        field("replica-announced", 1),
    ]);
    Reply::Map(f)
}

fn sentinel_state(id: &str, addr: &Addr, view: &View) -> Reply {
    let mut f = common_fields(id, addr, id, "sentinel");
    f.extend([
        field("down-after-milliseconds", DOWN_AFTER_MS),
        field("last-hello-message", 0),
        field("voted-leader", "?"),
        field("voted-leader-epoch", view.epoch),
    ]);
    Reply::Map(f)
}

fn help(command: &str, lines: &[&str]) -> Reply {
    let mut out = vec![Reply::text(format!(
        "{command} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    ))];
    out.extend(lines.iter().map(Reply::text));
    out.push(Reply::text("HELP"));
    out.push(Reply::text("    Print this help."));
    Reply::Array(out)
}

/// Redis's wording, arguments quoted and cut at 128 bytes in all.
fn unknown_command(args: &[Vec<u8>]) -> Reply {
    let mut listed = String::new();
    for arg in &args[1..] {
        if listed.len() >= 128 {
            break;
        }
        let room = 128 - listed.len();
        listed.push_str(&format!("'{}' ", truncate(arg, room)));
    }
    Reply::err(format!(
        "unknown command '{}', with args beginning with: {listed}",
        truncate(&args[0], 128)
    ))
}

fn truncate(bytes: &[u8], max: usize) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(max)]).into_owned()
}

fn parse_int(bytes: &[u8]) -> Option<i64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// Redis's rule for client names and library attributes: printable ASCII, no spaces.
fn valid_client_attr(value: &[u8]) -> bool {
    value.iter().all(|&b| (b'!'..=b'~').contains(&b))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).unwrap_or(&0) ^ b.get(i).unwrap_or(&0);
    }
    diff == 0
}
