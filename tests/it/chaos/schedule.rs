//! The fault schedule and the load script, both drawn from the seed: the same seed gives the same
//! faults at the same offsets and the same sequence of client decisions, so a failure can be
//! chased by running its seed again.

use std::time::Duration;

use rand::{Rng, SeedableRng, rngs::StdRng};

/// The roles of the fleet a fault can hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Ingress,
    Worker,
    Upserter,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Ingress => "ingress",
            Role::Worker => "worker",
            Role::Upserter => "upserter",
        }
    }
}

/// What the simulated WeChat does wrong for a while.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SimFault {
    /// `-1` on this share of calls.
    Busy(f64),
    Http502(f64),
    Garbage(f64),
    /// Never answered (the worker's timeout ends them).
    Hang(f64),
    /// Added before every answer, then gone at once: WeChat slow, then fast again.
    Latency(u64),
    /// Every call answered 45011.
    Storm,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// A process stopped (`kill -9` if `hard`, else SIGTERM) and started again after `down`.
    Process {
        role: Role,
        index: usize,
        hard: bool,
        down: Duration,
    },
    /// A nats-server (a node of the cluster) killed or shut down, and started again.
    Nats {
        node: usize,
        hard: bool,
        down: Duration,
    },
    /// Every database connection cut, and new ones refused, for `down` (PostgreSQL only).
    Database {
        down: Duration,
    },
    /// Every byte to and from NATS `delay` late for `lasting` (one nats-server only).
    SlowNats {
        delay: Duration,
        lasting: Duration,
    },
    Sim {
        fault: SimFault,
        lasting: Duration,
    },
}

impl Fault {
    /// Its kind, for the tally of a run.
    pub fn kind(&self) -> String {
        match self {
            Fault::Process { role, hard, .. } => {
                format!(
                    "{} {}",
                    role.name(),
                    if *hard { "kill -9" } else { "SIGTERM" }
                )
            }
            Fault::Nats { hard, .. } => {
                format!("nats-server {}", if *hard { "kill -9" } else { "SIGTERM" })
            }
            Fault::Database { .. } => "database cut".into(),
            Fault::SlowNats { .. } => "NATS slowed".into(),
            Fault::Sim { fault, .. } => format!("wechat {}", sim_name(fault)),
        }
    }

    /// How long the fault lasts once started.
    pub fn lasting(&self) -> Duration {
        match self {
            Fault::Process { down, .. } | Fault::Nats { down, .. } | Fault::Database { down } => {
                *down
            }
            Fault::SlowNats { lasting, .. } | Fault::Sim { lasting, .. } => *lasting,
        }
    }
}

fn sim_name(f: &SimFault) -> &'static str {
    match f {
        SimFault::Busy(_) => "-1",
        SimFault::Http502(_) => "502",
        SimFault::Garbage(_) => "garbage",
        SimFault::Hang(_) => "hangs",
        SimFault::Latency(_) => "latency",
        SimFault::Storm => "45011 storm",
    }
}

/// What the fleet looks like: which faults make sense against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub ingresses: usize,
    pub workers: usize,
    pub upserters: usize,
    /// 1: one nats-server behind a delaying proxy; 3: a cluster.
    pub nats_nodes: usize,
    pub postgres: bool,
}

/// A fault and when it starts, counted from the start of the load.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub at: Duration,
    pub fault: Fault,
}

/// The faults of a run of `duration`: one at a time, each followed by a quiet gap, none
/// starting in the last tenth (the fleet gets a moment to settle before the checks).
pub fn faults(seed: u64, duration: Duration, shape: Shape) -> Vec<Planned> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut at = Duration::from_millis(rng.random_range(500..2_000));
    let mut plan = Vec::new();
    while at < duration.mul_f64(0.9) {
        let fault = draw(&mut rng, shape);
        let next = at + fault.lasting() + Duration::from_millis(rng.random_range(1_000..4_000));
        plan.push(Planned { at, fault });
        at = next;
    }
    plan
}

fn draw(rng: &mut StdRng, shape: Shape) -> Fault {
    let down = Duration::from_millis(rng.random_range(500..6_000));
    let hard = rng.random_bool(0.5);
    loop {
        return match rng.random_range(0..10) {
            0..=1 => Fault::Process {
                role: Role::Worker,
                index: rng.random_range(0..shape.workers),
                hard,
                down,
            },
            2 => Fault::Process {
                role: Role::Ingress,
                index: rng.random_range(0..shape.ingresses),
                hard,
                down,
            },
            3 => Fault::Process {
                role: Role::Upserter,
                index: rng.random_range(0..shape.upserters),
                hard,
                down,
            },
            4 => Fault::Nats {
                node: rng.random_range(0..shape.nats_nodes),
                hard,
                down,
            },
            5 if shape.postgres => Fault::Database { down },
            6 if shape.nats_nodes == 1 => Fault::SlowNats {
                delay: Duration::from_millis(rng.random_range(50..1_500)),
                lasting: down,
            },
            7..=9 => Fault::Sim {
                fault: match rng.random_range(0..6) {
                    0 => SimFault::Busy(rng.random_range(0.2..0.9)),
                    1 => SimFault::Http502(rng.random_range(0.2..0.9)),
                    2 => SimFault::Garbage(rng.random_range(0.2..0.9)),
                    3 => SimFault::Hang(rng.random_range(0.1..0.5)),
                    4 => SimFault::Latency(rng.random_range(100..900)),
                    _ => SimFault::Storm,
                },
                lasting: down,
            },
            _ => continue,
        };
    }
}

/// Each worker's clock offset (ms) for the whole run: within the skew bound of the 40/1s quota
/// (±20 ms of 25), except that a worker may run seconds off, which must then refuse to take
/// quota slots and leave its codes to the others (`src/exchange/skew.rs`).
pub fn clock_offsets(seed: u64, workers: usize) -> Vec<i64> {
    let mut rng = StdRng::seed_from_u64(seed.rotate_left(17) ^ 0xC10C);
    (0..workers)
        .map(|i| match i {
            0 => 0,
            _ if rng.random_bool(0.3) => {
                rng.random_range(2_000..4_000) * [-1, 1][rng.random_range(0..2)]
            }
            _ => rng.random_range(-20..=20),
        })
        .collect()
}

/// One client's decisions, from the seed and the client's number.
pub struct Script {
    rng: StdRng,
}

/// What a client does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A fresh code of user `user`, posted on ingress `via`, then its token checked on `/v1/me`
    /// (and, if `decrypt`, the user's profile decrypted right away).
    Login {
        user: usize,
        via: usize,
        decrypt: bool,
    },
    /// One fresh code posted on two ingresses at once.
    Duplicate { user: usize },
    /// The `pick`-th (modulo) code used before, posted again on ingress `via`.
    Reuse { pick: usize, via: usize },
    /// The `pick`-th (modulo) token of this client checked on `/v1/me` at ingress `via`.
    Check { pick: usize, via: usize },
    /// The `pick`-th (modulo) token logged out on ingress `via`, then `/v1/me` on the other.
    Logout { pick: usize, via: usize },
}

impl Script {
    pub fn new(seed: u64, client: usize) -> Script {
        let mixed = seed ^ (client as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Script {
            rng: StdRng::seed_from_u64(mixed),
        }
    }

    /// The next step and the pause before it.
    pub fn next(&mut self, users: usize, ingresses: usize) -> (Duration, Step) {
        let r = &mut self.rng;
        let pause = Duration::from_millis(r.random_range(10..150));
        let (pick, via, user) = (
            r.random_range(0..1_000_000),
            r.random_range(0..ingresses),
            r.random_range(0..users),
        );
        let step = match r.random_range(0..20) {
            0..=8 => Step::Login {
                user,
                via,
                decrypt: r.random_bool(0.3),
            },
            9..=10 => Step::Duplicate { user },
            11..=13 => Step::Reuse { pick, via },
            14..=16 => Step::Check { pick, via },
            _ => Step::Logout { pick, via },
        };
        (pause, step)
    }
}

#[test]
fn the_same_seed_gives_the_same_faults_and_the_same_script_and_another_seed_does_not() {
    let shape = Shape {
        ingresses: 2,
        workers: 3,
        upserters: 2,
        nats_nodes: 1,
        postgres: true,
    };
    let long = Duration::from_secs(600);
    assert_eq!(faults(7, long, shape), faults(7, long, shape));
    assert_ne!(faults(7, long, shape), faults(8, long, shape));
    let steps = |seed, client| {
        let mut s = Script::new(seed, client);
        (0..200).map(|_| s.next(40, 2)).collect::<Vec<_>>()
    };
    assert_eq!(steps(7, 0), steps(7, 0));
    assert_ne!(
        steps(7, 0),
        steps(7, 1),
        "each client has a script of its own"
    );
    assert_ne!(steps(7, 0), steps(8, 0));
    // Every kind of fault turns up in a long run, and none overlaps the next.
    let plan = faults(7, long, shape);
    let kinds: std::collections::BTreeSet<_> = plan
        .iter()
        .map(|p| p.fault.kind().split(' ').next().unwrap().to_string())
        .collect();
    for kind in [
        "worker",
        "ingress",
        "upserter",
        "nats-server",
        "database",
        "NATS",
        "wechat",
    ] {
        assert!(kinds.contains(kind), "{kind} never drawn: {kinds:?}");
    }
    assert!(
        plan.windows(2)
            .all(|w| w[0].at + w[0].fault.lasting() < w[1].at)
    );
}
