//! What makes a connection reconcile: its own changes, its Secrets' changes, the credentials it
//! reads, and, for a ClusterZohoConnection, namespaces coming and going.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::{Stream, StreamExt};
use k8s_openapi::{
    api::core::v1::{Namespace, Secret},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    Api, Resource, ResourceExt,
    api::{DynamicObject, PartialObjectMeta},
    runtime::{
        Controller, WatchStreamExt,
        controller::{self, Config as ControllerConfig},
        reflector::{self, ObjectRef, Store, reflector},
        utils::{Backoff, ResetTimerBackoff},
        watcher::{self, Config as WatcherConfig},
    },
};
use tracing::warn;

use crate::{
    api::{ClusterZohoConnection, Connection, MANAGED_BY_LABEL, MANAGED_BY_VALUE, ZohoConnection},
    cache::{self, SecretWriters},
    controller::{Context, error_policy, reconcile},
    schedule,
};

/// Which connections read which Secrets by name (their credentials, and a target Secret that is
/// someone else's until it is deleted), so that a Secret event reaches exactly those, however many
/// connections there are. Each reconcile records what it read.
#[derive(Default)]
pub struct SecretReaders {
    inner: Mutex<Readers>,
}

/// A connection, as compact as it can be: thousands are kept. A ZohoConnection has a namespace, a
/// ClusterZohoConnection none, so the namespace tells the kinds apart.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Reader {
    namespace: Option<String>,
    name: String,
}

#[derive(Default)]
struct Readers {
    by_secret: HashMap<ObjectRef<Secret>, Vec<Reader>>,
    by_reader: HashMap<Reader, Vec<ObjectRef<Secret>>>,
}

impl Readers {
    fn forget(&mut self, reader: &Reader) {
        for secret in self.by_reader.remove(reader).into_iter().flatten() {
            if let Some(readers) = self.by_secret.get_mut(&secret) {
                readers.retain(|r| r != reader);
                if readers.is_empty() {
                    self.by_secret.remove(&secret);
                }
            }
        }
    }
}

impl SecretReaders {
    /// Records the Secrets, as `(namespace, name)`, that `connection` reads now.
    pub fn record<K: Connection>(&self, connection: &K, secrets: &[(&str, &str)]) {
        let reader = Reader { namespace: connection.namespace(), name: connection.name_any() };
        let secrets: Vec<ObjectRef<Secret>> =
            secrets.iter().map(|(namespace, name)| ObjectRef::new(name).within(namespace)).collect();
        let mut inner = self.inner.lock().expect("never poisoned");
        if inner.by_reader.get(&reader) == Some(&secrets) {
            return;
        }
        inner.forget(&reader);
        for secret in &secrets {
            inner.by_secret.entry(secret.clone()).or_default().push(reader.clone());
        }
        inner.by_reader.insert(reader, secrets);
    }

    /// The connections of kind `K` that read this Secret.
    pub fn of<K: Connection>(&self, secret: &ObjectRef<Secret>) -> Vec<ObjectRef<K>> {
        let inner = self.inner.lock().expect("never poisoned");
        let readers = inner.by_secret.get(secret).into_iter().flatten();
        readers
            .filter(|reader| reader.namespace.is_some() == K::NAMESPACED)
            .map(|reader| {
                let object = ObjectRef::new(&reader.name);
                match &reader.namespace {
                    Some(namespace) => object.within(namespace),
                    None => object,
                }
            })
            .collect()
    }

    /// Forgets the readers for which `exists(namespace, name)` is false.
    pub fn retain(&self, exists: impl Fn(Option<&str>, &str) -> bool) {
        let mut inner = self.inner.lock().expect("never poisoned");
        let gone: Vec<Reader> = inner
            .by_reader
            .keys()
            .filter(|reader| !exists(reader.namespace.as_deref(), &reader.name))
            .cloned()
            .collect();
        for reader in gone {
            inner.forget(&reader);
        }
    }
}

/// The connections of kind `K` that control this Secret, and those that read it.
fn concerned<K: Connection>(ctx: &Context, secret: ObjectMeta) -> Vec<ObjectRef<K>> {
    let namespace = secret.namespace.unwrap_or_default();
    let name = secret.name.unwrap_or_default();
    let owners = secret
        .owner_references
        .into_iter()
        .flatten()
        .filter(|owner| {
            owner.controller == Some(true) && owner.kind == K::kind(&()) && owner.api_version == K::api_version(&())
        })
        .map(|owner| match K::NAMESPACED {
            true => ObjectRef::new(&owner.name).within(&namespace),
            false => ObjectRef::new(&owner.name),
        });
    let readers = ctx.readers.of::<K>(&ObjectRef::new(&name).within(&namespace));
    owners.chain(readers).collect()
}

/// Runs the ZohoConnection controller for one namespace (or all, with `None`). It fills the
/// namespace's [`SecretCache`](crate::cache::SecretCache) through `secrets`: two watches of
/// Secrets, the operator's own in full and every other as metadata, which are also what makes a
/// connection reconcile when a Secret it writes or reads changes.
pub async fn zoho_connections(
    ctx: Arc<Context>,
    namespace: Option<String>,
    secrets: SecretWriters,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let (connections, owned, others): (Api<ZohoConnection>, Api<Secret>, Api<PartialObjectMeta<Secret>>) =
        match &namespace {
            Some(ns) => (
                Api::namespaced(ctx.client.clone(), ns),
                Api::namespaced(ctx.client.clone(), ns),
                Api::namespaced(ctx.client.clone(), ns),
            ),
            None => (Api::all(ctx.client.clone()), Api::all(ctx.client.clone()), Api::all(ctx.client.clone())),
        };
    let (store, writer) = reflector::store();
    let connections = reflector(writer, watcher::watcher(connections, WatcherConfig::default()).modify(cache::strip));
    let controller = Controller::for_stream(connections.applied_objects(), store.clone());
    if let Some((_, cache)) = ctx.secrets.iter().find(|(scope, _)| *scope == namespace) {
        cache.know_connections(store.clone());
    }
    let pruner = tokio::spawn(forget_deleted(ctx.clone(), namespace, store));
    let ours = format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}");
    let owned = watcher::watcher(owned, WatcherConfig::default().labels(&ours)).modify(cache::strip);
    let not_ours = format!("{MANAGED_BY_LABEL}!={MANAGED_BY_VALUE}");
    let others = watcher::watcher(others, WatcherConfig::default().labels(&not_ours)).modify(cache::strip_to_identity);
    let (owned_ctx, others_ctx) = (ctx.clone(), ctx.clone());
    let controller = controller
        .watches_stream(reflector(secrets.owned, owned).touched_objects(), move |secret: Secret| {
            concerned::<ZohoConnection>(&owned_ctx, secret.metadata)
        })
        .watches_stream(reflector(secrets.others, others).touched_objects(), move |secret| {
            concerned::<ZohoConnection>(&others_ctx, secret.metadata)
        });
    drive(controller, ctx, shutdown).await;
    pruner.abort();
}

/// Runs the ClusterZohoConnection controller. It needs every namespace: `namespaces` is the
/// reflector that fills `ctx.namespaces`.
pub async fn cluster_zoho_connections(
    ctx: Arc<Context>,
    namespaces: impl Stream<Item = watcher::Result<watcher::Event<PartialObjectMeta<Namespace>>>> + Send + 'static,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let controller = Controller::new(Api::<ClusterZohoConnection>::all(client.clone()), WatcherConfig::default());
    let pruner = tokio::spawn(forget_deleted(ctx.clone(), None, controller.store()));
    let owned = WatcherConfig::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"));
    let (owned_ctx, readers_ctx) = (ctx.clone(), ctx.clone());
    // Any namespace event may change which namespaces a selector matches.
    let namespaces_ctx = ctx.clone();
    let namespace_changes = namespaces.touched_objects().filter_map(move |event| {
        if let Err(err) = &event {
            namespaces_ctx.watch_errors.log("ClusterZohoConnection", err);
        }
        futures::future::ready(event.ok().map(drop))
    });
    let controller = controller
        .watches(Api::<PartialObjectMeta<Secret>>::all(client.clone()), owned, move |secret| {
            concerned::<ClusterZohoConnection>(&owned_ctx, secret.metadata)
        })
        .watches(
            Api::<PartialObjectMeta<Secret>>::namespaced(client, &ctx.scope.cluster_resource_namespace),
            WatcherConfig::default(),
            move |secret| concerned::<ClusterZohoConnection>(&readers_ctx, secret.metadata),
        )
        .reconcile_all_on(namespace_changes);
    drive(controller, ctx, shutdown).await;
    pruner.abort();
}

/// The namespace reflector for ClusterZohoConnections, and its store.
pub fn namespaces(
    client: kube::Client,
) -> (
    Store<PartialObjectMeta<Namespace>>,
    impl Stream<Item = watcher::Result<watcher::Event<PartialObjectMeta<Namespace>>>>,
) {
    let (store, writer) = reflector::store();
    let stream =
        reflector(writer, watcher::watcher(Api::<PartialObjectMeta<Namespace>>::all(client), WatcherConfig::default()))
            .backoff(ResetTimerBackoff::new(WatchBackoff::default(), Duration::from_secs(30)));
    (store, stream)
}

const DEBOUNCE: Duration = Duration::from_millis(500);

async fn drive<K: Connection>(
    controller: Controller<K>,
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) where
    K::DynamicType: Default,
{
    let errors = ctx.clone();
    // The debounce merges the events of a reconcile's own writes (its Secret, then its status)
    // into one follow-up reconcile, which then sees both, instead of two that may see neither.
    let config = ControllerConfig::default().concurrency(ctx.scope.concurrency).debounce(DEBOUNCE);
    controller
        .with_config(config)
        .trigger_backoff(ResetTimerBackoff::new(WatchBackoff::default(), Duration::from_secs(30)))
        .graceful_shutdown_on(shutdown)
        .run(
            |connection, ctx: Arc<Context>| async move {
                let started = Instant::now();
                let result = reconcile(connection, ctx.clone()).await;
                ctx.metrics.observe_reconcile(started.elapsed());
                result
            },
            error_policy,
            ctx,
        )
        .for_each(|result| {
            if let Err(controller::Error::QueueError(err)) = result {
                errors.watch_errors.log(&K::kind(&()), &err);
            }
            futures::future::ready(())
        })
        .await;
}

/// Watch and list errors, at `warn` so that a missing permission is seen at the default level,
/// but at most once a minute per resource and kind of error: a watch that keeps failing retries
/// every few seconds.
#[derive(Default)]
pub struct WatchErrorLog {
    last: Mutex<HashMap<(String, String), Instant>>,
}

impl WatchErrorLog {
    pub fn log(&self, controller: &str, err: &watcher::Error) {
        let resource = resource_of(err).unwrap_or_else(|| format!("a resource watched by the {controller} controller"));
        let key = (resource.clone(), reason_of(err));
        {
            let mut last = self.last.lock().expect("never poisoned");
            if last.get(&key).is_some_and(|at| at.elapsed() < Duration::from_secs(60)) {
                return;
            }
            last.insert(key, Instant::now());
        }
        warn!(resource, controller, error = %err, "watch or list failed; retrying (repeats are logged once a minute)");
    }
}

fn status_of(err: &watcher::Error) -> Option<&kube::core::Status> {
    match err {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status)) => Some(status),
        watcher::Error::WatchError(status) => Some(status),
        _ => None,
    }
}

/// The resource the API server names in its error, such as `secrets`.
fn resource_of(err: &watcher::Error) -> Option<String> {
    status_of(err)?.details.as_ref().map(|details| details.kind.clone()).filter(|kind| !kind.is_empty())
}

fn reason_of(err: &watcher::Error) -> String {
    status_of(err).map_or_else(|| "transport".to_string(), |status| status.reason.clone())
}

/// Drops what the process keeps about connections that no longer exist: metric series, credential
/// readers, error counts, and idle credentials. Connections usually have no finalizer (the
/// ownerReference cleans up their Secrets), so nothing else observes their deletion. Each
/// controller looks after its own kind and namespace.
async fn forget_deleted<K: Connection>(ctx: Arc<Context>, namespace: Option<String>, store: Store<K>) {
    // Store::wait_until_ready wakes only the last task that polled it, and the controller polls it
    // too; a waiter of our own would sleep forever, so it asks again every second.
    loop {
        match tokio::time::timeout(Duration::from_secs(1), store.wait_until_ready()).await {
            Ok(Ok(())) => break,
            Ok(Err(_writer_dropped)) => return,
            Err(_not_yet) => {}
        }
    }
    let kind = K::kind(&());
    let gone = |object_kind: &str, object_namespace: Option<&str>, name: &str| {
        let in_scope = object_kind == kind && (namespace.is_none() || namespace.as_deref() == object_namespace);
        let key = ObjectRef::new(name);
        let key = match object_namespace {
            Some(ns) if K::NAMESPACED => key.within(ns),
            _ => key,
        };
        in_scope && store.get(&key).is_none()
    };
    loop {
        ctx.metrics.retain_connections(|labels| {
            let namespace = Some(labels.namespace.as_str()).filter(|ns| !ns.is_empty());
            let labelled_kind =
                if namespace.is_some() { ZohoConnection::kind(&()) } else { ClusterZohoConnection::kind(&()) };
            !gone(&labelled_kind, namespace, &labels.name)
        });
        let exists = |key: &ObjectRef<DynamicObject>| !gone(&key.dyntype.kind, key.namespace.as_deref(), &key.name);
        ctx.readers.retain(|namespace, name| {
            let reader_kind =
                if namespace.is_some() { ZohoConnection::kind(&()) } else { ClusterZohoConnection::kind(&()) };
            !gone(&reader_kind, namespace, name)
        });
        ctx.retain_api_errors(exists);
        ctx.secrets.iter().for_each(|(_, cache)| cache.prune());
        ctx.coordinator.forget_idle(jiff::Timestamp::now());
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
}

/// Backoff for the watches. kube's default follows client-go (up to 30 s, reset after 2 minutes
/// without errors), which after an API server or etcd restart can delay noticing changes by a
/// minute; the watches here are few and cheap, so they retry sooner.
#[derive(Default)]
pub struct WatchBackoff {
    failed_attempts: u32,
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.failed_attempts = self.failed_attempts.saturating_add(1);
        Some(schedule::api_retry_delay(self.failed_attempts, rand::random()))
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.failed_attempts = 0;
    }
}
