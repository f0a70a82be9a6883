//! The host's cores, shared fairly between calls that need them for longer
//! than a tick: across accounts first, then across the sub-tenants of one
//! account, then in turns within a sub-tenant.
//!
//! Without this, every spinning guest yields at each epoch tick into one
//! first-in-first-out run queue, so a quiet call waits behind every other
//! runnable guest: 32 flooding calls on 2 cores made a 1 ms call 26× slower.
//! Here only as many guests as there are cores hold one at a time; the
//! others wait, off the run queue, in queues by account and sub-tenant, and
//! the next to run is the one whose account (then sub-tenant) has had the
//! least core time. A holder looks at the queues at each of its ticks and
//! hands its core over when a waiter's claim is better than its own.
//!
//! A call whose sub-tenant already has calls waiting queues at its start
//! instead, so a backlogged flood's new calls do not each run a tick
//! unqueued.
//!
//! What it costs a call that does not wait: a call runs freely until it has
//! run for a tick, timed over its task's polls ([`Metered`]; its epoch
//! deadline is reset at its start, warm environments' too), so a short call
//! never takes the lock however long it waits for its worker; the tick it
//! ran freely is charged when it first takes a core. An account or sub-tenant that goes idle while
//! ahead of the others is remembered so for a second, so that going idle
//! between calls does not make it a newcomer again.
//!
//! A holder parked in a host call (a slow client, an outgoing request, a
//! nested call) is not running wasm and does not tick: after two ticks
//! without one, its core is given to a waiter, and it queues again at its
//! next tick.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use tokio::sync::oneshot;

/// What a waiting guest awaits before it runs on.
pub type Wait = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Ticks a holder may go without ticking before its core is given away.
const STALE_TICKS: u64 = 2;

/// While calls wait for a core, the epoch ticks this many times per tick.
/// Every guest that holds a core then yields that much more often, so a
/// request arriving on a worker that runs a spinning guest is read, and a
/// quiet call that queued behind a flood gets its core, within a fraction
/// of a tick. Uncontended, the tick stays as configured: short calls that
/// merely cross a tick pay for each one, which at a 500 us tick doubled
/// single-use `hello`'s p99.
pub const CONTENDED_SPLIT: u32 = 4;

/// How long an account (or sub-tenant) that went idle while ahead of the
/// others is remembered as ahead: coming back, it resumes its lead rather
/// than starting as a newcomer.
const OWED_FOR: Duration = Duration::from_secs(1);

/// Idle accounts and sub-tenants remembered at most (past it, the oldest
/// half of the memory is dropped).
const MAX_OWED: usize = 4096;

/// The cores and who holds them.
pub struct Cores {
    state: Mutex<State>,
    /// Calls queued now, read without the lock at every call's start.
    waiting: AtomicUsize,
    /// Epoch ticks seen by the sweeper.
    epoch: AtomicU64,
    next_seat: AtomicU64,
    /// What calls' poll times are measured from.
    base: Instant,
    /// A waiter's claim must be better than a holder's by this much of core
    /// time to take its core (so equals do not trade at every tick).
    margin: u64,
    /// How long a holder keeps its core against waiters of its own
    /// sub-tenant.
    quantum: Duration,
    /// Calls that waited for a core.
    pub waits: Counter,
}

struct State {
    cores: usize,
    holders: HashMap<u64, Holder>,
    accounts: HashMap<Arc<str>, Account>,
    /// Core time idle accounts had had beyond the least active one, and
    /// since when they are idle.
    ahead: Ahead<Arc<str>>,
    /// The same for idle sub-tenants, by account and sub-tenant.
    sub_ahead: Ahead<(Arc<str>, Arc<str>)>,
}

/// Leads of idle accounts or sub-tenants, so that going idle between calls
/// does not wipe a history of having had more than the others.
struct Ahead<K>(HashMap<K, (u64, Instant)>);

impl<K: std::hash::Hash + Eq> Ahead<K> {
    fn remember(&mut self, key: K, lead: u64, now: Instant) {
        if lead == 0 {
            return;
        }
        if self.0.len() >= MAX_OWED {
            let mut ages: Vec<Instant> = self.0.values().map(|(_, since)| *since).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            self.0.retain(|_, (_, since)| *since > cut);
        }
        self.0.insert(key, (lead, now));
    }

    /// Where a newcomer starts, against `least` of those active: its lead
    /// if it went idle ahead less than `OWED_FOR` ago, else a little
    /// behind, so it runs next: three ticks, two once the tick it ran
    /// before asking is charged, which is what it needs to beat a holder's
    /// claim by more than the margin.
    fn start(&mut self, key: &K, least: u64, margin: u64, now: Instant) -> u64 {
        match self.0.remove(key) {
            Some((lead, since)) if now.saturating_duration_since(since) < OWED_FOR => least + lead,
            _ => least.saturating_sub(3 * margin),
        }
    }
}

struct Holder {
    account: Arc<str>,
    sub_tenant: Arc<str>,
    /// The epoch of its last tick (or of its grant).
    seen: u64,
    granted: Instant,
    /// Core time up to here is charged.
    charged: Instant,
}

/// An account with calls holding or waiting for a core.
#[derive(Default)]
struct Account {
    /// Core time had, in ns (relative: newcomers start near the lowest).
    used: u64,
    holding: usize,
    waiting: usize,
    sub_tenants: HashMap<Arc<str>, SubTenant>,
}

#[derive(Default)]
struct SubTenant {
    used: u64,
    holding: usize,
    queue: VecDeque<Waiter>,
}

struct Waiter {
    seat: u64,
    wake: oneshot::Sender<()>,
}

impl Cores {
    /// `cores` guests run at once; `tick` is the epoch tick.
    pub fn new(cores: usize, tick: Duration) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                cores: cores.max(1),
                holders: HashMap::new(),
                accounts: HashMap::new(),
                ahead: Ahead(HashMap::new()),
                sub_ahead: Ahead(HashMap::new()),
            }),
            waiting: AtomicUsize::new(0),
            epoch: AtomicU64::new(0),
            next_seat: AtomicU64::new(0),
            base: Instant::now(),
            margin: tick.as_nanos() as u64,
            quantum: tick * 10,
            waits: Counter::default(),
        })
    }

    /// A seat for one call, charged to `account`, then `sub_tenant`.
    pub fn seat(self: &Arc<Self>, account: &str, sub_tenant: &str) -> Seat {
        Seat {
            place: Arc::new(Place {
                cores: self.clone(),
                id: self.next_seat.fetch_add(1, Ordering::Relaxed),
                account: account.into(),
                sub_tenant: sub_tenant.into(),
                ticked: std::sync::atomic::AtomicBool::new(false),
                entered: std::sync::atomic::AtomicBool::new(false),
                ran: AtomicU64::new(0),
                polled_since: AtomicU64::new(0),
            }),
        }
    }

    /// Whether calls wait for a core now. While they do, the epoch ticks
    /// faster (see [`CONTENDED_SPLIT`]).
    pub fn contended(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0
    }

    /// At each epoch tick: cores held by calls that have stopped ticking
    /// (parked in a host call) go to waiters.
    pub fn sweep(&self) {
        let epoch = self.epoch.fetch_add(1, Ordering::Relaxed) + 1;
        if self.waiting.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut state = self.lock();
        let stale: Vec<u64> = state
            .holders
            .iter()
            .filter(|(_, holder)| holder.seen + STALE_TICKS < epoch)
            .map(|(seat, _)| *seat)
            .collect();
        for seat in stale {
            // Not charged for the time parked: it was not running.
            state.release(seat, None);
        }
        self.grant(&mut state, Instant::now());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is consistent between statements: a panic elsewhere
        // does not stop the cores from being shared.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Hands free cores to the best waiters.
    fn grant(&self, state: &mut State, now: Instant) {
        let epoch = self.epoch.load(Ordering::Relaxed);
        while state.holders.len() < state.cores {
            let Some((account, sub_tenant)) = state.best_waiter() else {
                break;
            };
            let Some(waiter) = state.dequeue(&account, &sub_tenant) else {
                break;
            };
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            state.hold(waiter.seat, account, sub_tenant, epoch, now);
            // A waiter whose call is gone leaves through its seat's drop,
            // which finds it a holder and frees the core again.
            let _ = waiter.wake.send(());
        }
    }

    /// Queues `seat`; the future ends when it holds a core.
    fn enqueue(&self, state: &mut State, seat: &Place) -> Wait {
        seat.entered.store(true, Ordering::Relaxed);
        let (wake, woken) = oneshot::channel();
        let account = state.activate(&seat.account, &seat.sub_tenant, self.margin);
        account.waiting += 1;
        let sub_tenant = account.sub_tenants.entry(seat.sub_tenant.clone()).or_default();
        sub_tenant.queue.push_back(Waiter { seat: seat.id, wake });
        self.waiting.fetch_add(1, Ordering::Relaxed);
        self.waits.inc();
        Box::pin(async move {
            let _ = woken.await;
        })
    }
}

impl State {
    /// The account and sub-tenant of `name`, created for a newcomer with a
    /// little less core time than the least of those present, so it runs
    /// next rather than after everyone's history.
    fn activate(&mut self, account: &Arc<str>, sub_tenant: &Arc<str>, margin: u64) -> &mut Account {
        let now = Instant::now();
        if !self.accounts.contains_key(account) {
            let least = self.accounts.values().map(|a| a.used).min().unwrap_or(0);
            let used = self.ahead.start(account, least, margin, now);
            self.accounts.insert(
                account.clone(),
                Account {
                    used,
                    ..Account::default()
                },
            );
        }
        let entry = self.accounts.entry(account.clone()).or_default();
        if !entry.sub_tenants.contains_key(sub_tenant) {
            let least = entry.sub_tenants.values().map(|s| s.used).min().unwrap_or(0);
            let key = (account.clone(), sub_tenant.clone());
            let used = self.sub_ahead.start(&key, least, margin, now);
            entry.sub_tenants.insert(
                sub_tenant.clone(),
                SubTenant {
                    used,
                    ..SubTenant::default()
                },
            );
        }
        entry
    }

    fn hold(&mut self, seat: u64, account: Arc<str>, sub_tenant: Arc<str>, epoch: u64, now: Instant) {
        // Active already (it was queued, or activated just now).
        let entry = self.accounts.entry(account.clone()).or_default();
        entry.holding += 1;
        entry.sub_tenants.entry(sub_tenant.clone()).or_default().holding += 1;
        self.holders.insert(
            seat,
            Holder {
                account,
                sub_tenant,
                seen: epoch,
                granted: now,
                charged: now,
            },
        );
    }

    /// Charges a holder's core time since it was last charged.
    fn charge(&mut self, seat: u64, now: Instant) {
        let Some(holder) = self.holders.get_mut(&seat) else {
            return;
        };
        let spent = now.saturating_duration_since(holder.charged).as_nanos() as u64;
        holder.charged = now;
        let (account, sub_tenant) = (holder.account.clone(), holder.sub_tenant.clone());
        if let Some(entry) = self.accounts.get_mut(&account) {
            entry.used += spent;
            if let Some(sub) = entry.sub_tenants.get_mut(&sub_tenant) {
                sub.used += spent;
            }
        }
    }

    /// Takes `seat`'s core (charging it up to `now`, if given).
    fn release(&mut self, seat: u64, now: Option<Instant>) {
        if let Some(now) = now {
            self.charge(seat, now);
        }
        let Some(holder) = self.holders.remove(&seat) else {
            return;
        };
        if let Some(entry) = self.accounts.get_mut(&holder.account) {
            entry.holding -= 1;
            if let Some(sub) = entry.sub_tenants.get_mut(&holder.sub_tenant) {
                sub.holding -= 1;
            }
        }
        self.retire(&holder.account, &holder.sub_tenant);
    }

    /// Forgets a sub-tenant, and its account, with nothing holding or
    /// waiting; remembering by how much they were ahead of the others.
    fn retire(&mut self, account: &Arc<str>, sub_tenant: &Arc<str>) {
        let now = Instant::now();
        let Some(entry) = self.accounts.get_mut(account) else {
            return;
        };
        if let Some(sub) = entry.sub_tenants.get(sub_tenant)
            && sub.holding == 0
            && sub.queue.is_empty()
        {
            let used = sub.used;
            entry.sub_tenants.remove(sub_tenant);
            if let Some(least) = entry.sub_tenants.values().map(|s| s.used).min() {
                let key = (account.clone(), sub_tenant.clone());
                self.sub_ahead.remember(key, used.saturating_sub(least), now);
            }
        }
        if entry.holding == 0 && entry.waiting == 0 {
            let used = entry.used;
            self.accounts.remove(account);
            if let Some(least) = self.accounts.values().map(|a| a.used).min() {
                self.ahead.remember(account.clone(), used.saturating_sub(least), now);
            }
        }
    }

    /// The account, then sub-tenant, that has had the least core time among
    /// those waiting.
    fn best_waiter(&self) -> Option<(Arc<str>, Arc<str>)> {
        let (name, account) = self
            .accounts
            .iter()
            .filter(|(_, a)| a.waiting > 0)
            .min_by_key(|(_, a)| a.used)?;
        let (sub_name, _) = account
            .sub_tenants
            .iter()
            .filter(|(_, s)| !s.queue.is_empty())
            .min_by_key(|(_, s)| s.used)?;
        Some((name.clone(), sub_name.clone()))
    }

    fn dequeue(&mut self, account: &Arc<str>, sub_tenant: &Arc<str>) -> Option<Waiter> {
        let entry = self.accounts.get_mut(account)?;
        let waiter = entry.sub_tenants.get_mut(sub_tenant)?.queue.pop_front()?;
        entry.waiting -= 1;
        Some(waiter)
    }

    /// Removes `seat` from its queue, if it is in one.
    fn unqueue(&mut self, seat: u64, account: &Arc<str>, sub_tenant: &Arc<str>) -> bool {
        let Some(entry) = self.accounts.get_mut(account) else {
            return false;
        };
        let Some(sub) = entry.sub_tenants.get_mut(sub_tenant) else {
            return false;
        };
        let Some(at) = sub.queue.iter().position(|w| w.seat == seat) else {
            return false;
        };
        sub.queue.remove(at);
        entry.waiting -= 1;
        true
    }

    /// Whether the best waiter's claim beats holder `seat`'s.
    fn outclassed(&self, seat: u64, margin: u64, quantum: Duration, now: Instant) -> bool {
        let Some(holder) = self.holders.get(&seat) else {
            return false;
        };
        let Some((account, sub_tenant)) = self.best_waiter() else {
            return false;
        };
        let (Some(theirs), Some(ours)) = (self.accounts.get(&account), self.accounts.get(&holder.account)) else {
            return false;
        };
        if account != holder.account {
            return theirs.used + margin < ours.used;
        }
        if sub_tenant != holder.sub_tenant {
            let used = |name: &Arc<str>| ours.sub_tenants.get(name).map_or(0, |s| s.used);
            return used(&sub_tenant) + margin < used(&holder.sub_tenant);
        }
        now.saturating_duration_since(holder.granted) >= quantum
    }
}

/// One call's place at the cores; leaving (dropping it) frees its core or
/// its place in a queue.
pub struct Seat {
    place: Arc<Place>,
}

/// Who a seat is, shared with the futures its guest awaits.
struct Place {
    cores: Arc<Cores>,
    id: u64,
    account: Arc<str>,
    sub_tenant: Arc<str>,
    /// Whether the call has passed its first tick.
    ticked: std::sync::atomic::AtomicBool,
    /// Whether it ever held a core or queued for one: a call that never did
    /// leaves without the lock.
    entered: std::sync::atomic::AtomicBool,
    /// How long the call's task has been polled, ns, over its polls that
    /// ended ([`Metered`]).
    ran: AtomicU64,
    /// When its current poll began, ns after `Cores::base`; 0 between polls.
    polled_since: AtomicU64,
}

impl Place {
    /// How long the call has run by `now`: its polls, not the time it waited
    /// for its turn on a worker or parked in a host call.
    fn ran(&self, now: Instant) -> u64 {
        let since = self.polled_since.load(Ordering::Relaxed);
        let current = match since {
            0 => 0,
            since => (now.saturating_duration_since(self.cores.base).as_nanos() as u64).saturating_sub(since),
        };
        self.ran.load(Ordering::Relaxed) + current
    }
}

/// Times a call's task (see [`Metered`]).
pub struct Timer(Arc<Place>);

impl Timer {
    /// The task, timed at each poll.
    pub fn time<F: Future>(self, task: F) -> Metered<F> {
        Metered {
            inner: task,
            place: self.0,
        }
    }
}

pin_project_lite::pin_project! {
    /// A call's task, timed at each poll, so that a call is short or long by
    /// the time it ran, not by the ticks it happened to be alive across: under
    /// load a short call waits for its worker for longer than a tick, and
    /// counting ticks made most of them queue for a core.
    pub struct Metered<F> {
        #[pin]
        inner: F,
        place: Arc<Place>,
    }
}

impl<F: Future> Future for Metered<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<F::Output> {
        let this = self.project();
        let place = &**this.place;
        let started = Instant::now();
        let offset = (started.saturating_duration_since(place.cores.base).as_nanos() as u64).max(1);
        place.polled_since.store(offset, Ordering::Relaxed);
        let polled = this.inner.poll(cx);
        place.polled_since.store(0, Ordering::Relaxed);
        place
            .ran
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        polled
    }
}

impl Seat {
    /// What times the call's task, to wrap it in before the seat moves
    /// into it.
    pub fn timer(&self) -> Timer {
        Timer(self.place.clone())
    }

    /// At the call's start: if its sub-tenant already has calls waiting for
    /// a core, the call waits its turn with them rather than running ahead
    /// of them for a tick. A backlogged flood's new calls would otherwise
    /// each take a tick of core unqueued, which with calls ending as fast as
    /// the queue lets them is most of a core.
    pub fn at_start(&self) -> Option<Wait> {
        let place = &self.place;
        if place.cores.waiting.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut state = place.cores.lock();
        let backlogged = state
            .accounts
            .get(&place.account)
            .and_then(|a| a.sub_tenants.get(&place.sub_tenant))
            .is_some_and(|s| !s.queue.is_empty());
        if !backlogged {
            return None;
        }
        Some(place.cores.enqueue(&mut state, place))
    }

    /// What the guest awaits at an epoch tick; `None` to be put back on the
    /// run queue only.
    ///
    /// From its first tick on, a call needs a core (and waits for one if
    /// they are all held). From its second, it yields with tokio's yield:
    /// that lets the worker poll for I/O before the guest runs on
    /// (a task that wakes itself goes straight back on the run queue, and a
    /// worker with runnable tasks looks for I/O only every 61 polls, so a
    /// spinning guest held up every request arriving on its worker). Then,
    /// if a waiter's claim is better than this call's, it waits for a core
    /// again: checked after the yield, not before, so a call that came in
    /// during it is seen at once rather than a tick later.
    ///
    /// At the first tick, while nobody waits for a core, a call that got
    /// one is only put back on the run queue: most calls that meet a first
    /// tick are short calls that merely crossed it, and tokio's yield would
    /// park them until the worker has nothing else to run, which at 32
    /// connections of single-use `hello` doubled their p99. When calls do
    /// wait, every tick polls for I/O and checks the queues.
    pub fn tick(&self, now: Instant) -> Option<Wait> {
        // Short by the time it ran: no core, no lock, only back on the run
        // queue.
        if !self.place.entered.load(Ordering::Relaxed) && self.place.ran(now) < self.place.cores.margin {
            return None;
        }
        let first = !self.place.ticked.swap(true, Ordering::Relaxed);
        if first && self.place.cores.waiting.load(Ordering::Relaxed) == 0 {
            return self.place.tick(now);
        }
        Some(match self.place.tick(now) {
            Some(wait) => wait,
            None => {
                let place = self.place.clone();
                Box::pin(async move {
                    tokio::task::yield_now().await;
                    if let Some(wait) = place.check(Instant::now()) {
                        wait.await;
                    }
                })
            }
        })
    }
}

impl Place {
    /// Charges a holder's tick, or asks for a core: `None` once it holds
    /// one, or the wait for one.
    fn tick(&self, now: Instant) -> Option<Wait> {
        let cores = &self.cores;
        let mut state = cores.lock();
        self.entered.store(true, Ordering::Relaxed);
        let epoch = cores.epoch.load(Ordering::Relaxed);
        if state.holders.contains_key(&self.id) {
            state.charge(self.id, now);
            if let Some(holder) = state.holders.get_mut(&self.id) {
                holder.seen = epoch;
            }
            return None;
        }
        // The first tick of this call, or its core was given away while it
        // was parked. Since its start (or its return) it ran freely, for at
        // most a tick: charged as one.
        let account = state.activate(&self.account, &self.sub_tenant, cores.margin);
        account.used += cores.margin;
        account.sub_tenants.entry(self.sub_tenant.clone()).or_default().used += cores.margin;
        if state.holders.len() < state.cores {
            state.hold(self.id, self.account.clone(), self.sub_tenant.clone(), epoch, now);
            return None;
        }
        let wait = cores.enqueue(&mut state, self);
        cores.grant(&mut state, now);
        Some(wait)
    }

    /// A holder, back from its yield: hands its core to a waiter whose
    /// claim is better, and answers the wait for a core again.
    fn check(&self, now: Instant) -> Option<Wait> {
        let cores = &self.cores;
        if cores.waiting.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut state = cores.lock();
        // The yield was not this call's core time.
        state.holders.get_mut(&self.id)?.charged = now;
        if !state.outclassed(self.id, cores.margin, cores.quantum, now) {
            return None;
        }
        // Queued before it lets go, so that its account and sub-tenant stay
        // active and keep the core time they have had.
        let wait = cores.enqueue(&mut state, self);
        state.release(self.id, None);
        cores.grant(&mut state, now);
        Some(wait)
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        let place = &self.place;
        // Set under the lock by the calls that hold or queue, all made by
        // this seat's own task before it drops the seat.
        if !place.entered.load(Ordering::Relaxed) {
            return;
        }
        let cores = &place.cores;
        let mut state = cores.lock();
        if state.holders.contains_key(&place.id) {
            let now = Instant::now();
            state.release(place.id, Some(now));
            cores.grant(&mut state, now);
        } else if state.unqueue(place.id, &place.account, &place.sub_tenant) {
            cores.waiting.fetch_sub(1, Ordering::Relaxed);
            state.retire(&place.account, &place.sub_tenant);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(1);

    /// Whether the future is done, polled once.
    fn ready(wait: &mut Wait) -> bool {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        wait.as_mut().poll(&mut cx).is_ready()
    }

    /// A tick and the check after its yield: `None` to run on.
    fn step(seat: &Seat, now: Instant) -> Option<Wait> {
        seat.place.tick(now).or_else(|| seat.place.check(now))
    }

    fn holders(cores: &Cores) -> usize {
        cores.lock().holders.len()
    }

    #[test]
    fn only_a_call_past_its_first_tick_yields_to_be_checked() {
        let cores = Cores::new(1, TICK);
        let now = Instant::now();
        let seat = cores.seat("a", "");
        assert!(seat.tick(now).is_none(), "a call that ran under a tick only yields");
        assert!(!seat.place.entered.load(Ordering::Relaxed), "and took no core");
        seat.place.ran.store(TICK.as_nanos() as u64, Ordering::Relaxed);
        assert!(
            seat.tick(now).is_none(),
            "the first tick past a tick of running takes the free core and runs on"
        );
        assert_eq!(holders(&cores), 1);
        assert!(
            seat.tick(now + TICK).is_some(),
            "later ones yield, then check the queues"
        );
    }

    #[test]
    fn calls_run_freely_until_the_cores_are_all_held() {
        let cores = Cores::new(2, TICK);
        let now = Instant::now();
        let (a, b) = (cores.seat("a", ""), cores.seat("a", ""));
        assert!(step(&a, now).is_none());
        assert!(step(&b, now).is_none());
        assert_eq!(holders(&cores), 2);
        assert!(!cores.contended(), "the epoch ticks as configured");
        let c = cores.seat("a", "");
        let mut wait = step(&c, now).unwrap_or_else(|| panic!("both cores are held"));
        assert!(!ready(&mut wait));
        assert!(cores.contended(), "a call waits: the epoch ticks faster");
        drop(a);
        assert!(ready(&mut wait), "a leaving hands its core to the waiter");
        assert!(!cores.contended());
        assert_eq!(holders(&cores), 2);
        drop((b, c));
        assert!(cores.lock().accounts.is_empty(), "nothing is kept for idle accounts");
        assert_eq!(cores.waiting.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn another_account_takes_a_core_at_the_next_tick() {
        let cores = Cores::new(2, TICK);
        let mut now = Instant::now();
        let flood: Vec<Seat> = (0..8).map(|_| cores.seat("noisy", "flood")).collect();
        let mut waits: Vec<Option<Wait>> = flood.iter().map(|s| step(s, now)).collect();
        assert_eq!(waits.iter().filter(|w| w.is_none()).count(), 2);
        now += TICK * 5;
        let quiet = cores.seat("quiet", "");
        let mut wait = step(&quiet, now).unwrap_or_else(|| panic!("the cores are held"));
        // The flood's next tick hands a core to the newcomer, not to the
        // flood's own waiters.
        let holder = waits
            .iter()
            .position(Option::is_none)
            .unwrap_or_else(|| panic!("someone holds a core"));
        let handed = step(&flood[holder], now + TICK);
        assert!(handed.is_some(), "the holder queues again");
        assert!(ready(&mut wait));
        waits[holder] = handed;
        // Having had far less core time, the quiet account keeps its core at
        // its own ticks.
        assert!(step(&quiet, now + TICK * 2).is_none());
    }

    #[test]
    fn an_account_gets_one_share_however_many_sub_tenants_it_has() {
        let cores = Cores::new(1, TICK);
        let start = Instant::now();
        let many: Vec<Seat> = (0..100).map(|i| cores.seat("many", &format!("s{i}"))).collect();
        let one = cores.seat("one", "");
        let mut seats: Vec<&Seat> = many.iter().collect();
        seats.push(&one);
        // Everyone asks at the start; then the holder ticks, 1 ms at a
        // time, for a simulated second. Waiting futures are polled to see
        // who holds the core.
        let mut waits: Vec<Option<Wait>> = seats.iter().map(|s| step(s, start)).collect();
        let mut had = [0u32; 2];
        for ms in 1..=1000u32 {
            let now = start + TICK * ms;
            let holder = (0..seats.len())
                .find(|&i| waits[i].as_mut().is_none_or(ready))
                .unwrap_or_else(|| panic!("someone holds the core"));
            waits[holder] = None;
            had[usize::from(holder == seats.len() - 1)] += 1;
            waits[holder] = step(seats[holder], now);
        }
        let share = f64::from(had[1]) / 1000.0;
        assert!((0.4..=0.6).contains(&share), "the lone account had {share} of the core");
    }

    #[test]
    fn sub_tenants_of_one_account_share_it() {
        let cores = Cores::new(1, TICK);
        let now = Instant::now();
        let flood = cores.seat("a", "flood");
        assert!(step(&flood, now).is_none());
        let backlog = cores.seat("a", "flood");
        let mut backlogged = step(&backlog, now).unwrap_or_else(|| panic!("queued"));
        // A new call of the backlogged sub-tenant queues at its start; one
        // of another sub-tenant runs to its first tick.
        let more = cores.seat("a", "flood");
        let mut behind = more
            .at_start()
            .unwrap_or_else(|| panic!("its sub-tenant is backlogged"));
        let quiet = cores.seat("a", "quiet");
        assert!(quiet.at_start().is_none());
        let mut wait = step(&quiet, now).unwrap_or_else(|| panic!("queued"));
        assert!(step(&flood, now + TICK * 3).is_some());
        assert!(ready(&mut wait), "the sub-tenant with less core time goes first");
        assert!(!ready(&mut backlogged) && !ready(&mut behind));
    }

    #[test]
    fn a_parked_holder_loses_its_core_to_a_waiter() {
        let cores = Cores::new(1, TICK);
        let now = Instant::now();
        let parked = cores.seat("a", "");
        assert!(step(&parked, now).is_none());
        let other = cores.seat("b", "");
        let mut wait = step(&other, now).unwrap_or_else(|| panic!("queued"));
        cores.sweep();
        cores.sweep();
        assert!(!ready(&mut wait), "two ticks are allowed");
        cores.sweep();
        assert!(ready(&mut wait));
        // Back from its host call, it queues like anyone else.
        let mut back = step(&parked, now + TICK * 3).unwrap_or_else(|| panic!("its core was given away"));
        drop(other);
        assert!(ready(&mut back));
    }

    #[test]
    fn a_call_that_goes_while_waiting_leaves_its_queue() {
        let cores = Cores::new(1, TICK);
        let now = Instant::now();
        let holder = cores.seat("a", "");
        assert!(step(&holder, now).is_none());
        let gone = cores.seat("b", "");
        let wait = step(&gone, now).unwrap_or_else(|| panic!("queued"));
        drop(wait);
        drop(gone);
        assert_eq!(cores.waiting.load(Ordering::Relaxed), 0);
        assert!(!cores.lock().accounts.contains_key("b"));
        drop(holder);
        assert!(cores.lock().accounts.is_empty());
    }

    #[test]
    fn going_idle_between_calls_does_not_make_an_account_a_newcomer() {
        let cores = Cores::new(1, TICK);
        let now = Instant::now();
        let hog = cores.seat("hog", "");
        assert!(step(&hog, now).is_none());
        let other = cores.seat("other", "");
        let mut waiting = step(&other, now).unwrap_or_else(|| panic!("queued"));
        // The hog runs on until the other's claim is better, then queues.
        let handed = step(&hog, now + TICK * 5);
        assert!(handed.is_some() && ready(&mut waiting));
        drop(handed);
        drop(hog);
        // Its next call, at once: still ahead by what it had, so it waits
        // rather than taking the core back as a newcomer would.
        let again = cores.seat("hog", "");
        let mut queued = step(&again, now + TICK * 6).unwrap_or_else(|| panic!("the core is held"));
        assert!(step(&other, now + TICK * 7).is_none(), "the other keeps its core");
        assert!(!ready(&mut queued));
    }
}
