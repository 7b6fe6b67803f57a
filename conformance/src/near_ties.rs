//! A data set that takes exact search past its first candidate page: near ties at the k-th place
//! and a filter that rejects most records. Shared by the scenario
//! `vector::search_beyond_the_first_candidate_page` and by the PostgreSQL and TiDB backends' own
//! tests of their second candidate query and widening loop (which include this file by path, so
//! it uses nothing but `p8fs_core` and `serde_json`).
//!
//! Per metric: 500 records of dimension 256 around a base vector `b` (components in [0.5, 1.5)),
//! a query `q = b + o` (`o` in [-0.5, 0.5)), and a direction `toward` (`o`, or `q` for dot) along
//! which distances to `q` decrease. `b + s·toward` is nearer the larger `s` is.
//! - `n0`..`n5`, kept by the filter: `s` = 0.02..0.07, nearer than every other kept record;
//! - `t00`..`t47`, kept: `b` with the one component to which the distance is most sensitive
//!   moved `48 - j` f32 ulps away from the query. Their f64 distances increase strictly as the id
//!   decreases (`t47` is the nearest) and all lie within a few f32 ulps of each other: ties for
//!   anything that ranks in f32 (pgvector, TiDB), and ordered against their ids, so taking a tie
//!   by id gives the wrong answer;
//! - `r000`..`r299`, rejected by the filter: `s` = 0.1..0.4, nearer than every kept record, so a
//!   window of the nearest records holds no kept one until it spans more than 300 rows;
//! - `s000`..`s139`, rejected, and `f0`..`f5`, kept: `s` < 0, farther than all of the above.
//!
//! The filter `group = "kept"` keeps 60 of the 500. [`SEARCHES`] puts the k-th place inside the
//! `t` group two ways: filtered with k = 10 (PostgreSQL filters in SQL, and its first window of
//! `k + max(8, k/4)` = 18 kept rows ends inside the ties, where its rounding bound cannot
//! separate the k-th place from the rest, so it must run its second query; TiDB filters after
//! fetching, and its windows of `k + 16` and `4 (k + 16)` rows hold only rejected records, so it
//! must widen), and unfiltered with k = 316 (TiDB's first window of 332 rows ends inside the
//! ties, so its bound forces a wider window; PostgreSQL's of 395 rows reaches past them).

use serde_json::{Value, json};

use p8fs_core::vector::{distance, search, upsert};
use p8fs_core::{
    CollectionName, CollectionSpec, Filter, JsonObject, Limit, Metric, RecordId, TenantId,
    VectorStore,
};

/// Dimension of every vector in the data set.
pub const DIMENSION: usize = 256;
/// Records in the near-tie group `t`.
pub const TIES: usize = 48;
/// Searches run on the data set: `(k, filtered)`.
pub const SEARCHES: [(u64, bool); 2] = [(10, true), (316, false)];
/// The metrics, one data set each.
pub const METRICS: [Metric; 3] = [Metric::Cosine, Metric::L2, Metric::Dot];

/// One record: id, vector and metadata.
#[derive(Debug, Clone)]
pub struct Item {
    pub id: String,
    pub vector: Vec<f32>,
    pub metadata: Value,
}

impl Item {
    /// Whether the record's metadata passes `filter`.
    pub fn passes(&self, filter: &Filter) -> bool {
        self.metadata
            .as_object()
            .is_some_and(|metadata| filter.matches(metadata))
    }
}

/// The query and records for one metric.
#[derive(Debug, Clone)]
pub struct NearTies {
    pub metric: Metric,
    pub query: Vec<f32>,
    pub items: Vec<Item>,
}

/// The filter that keeps 60 of the 500 records.
pub fn kept() -> Filter {
    Filter::new([("group".to_owned(), json!("kept"))]).expect("a valid filter")
}

/// The filter of a search in [`SEARCHES`].
pub fn filter_of(filtered: bool) -> Filter {
    if filtered { kept() } else { Filter::none() }
}

/// SplitMix64: a small deterministic generator, so the data set is the same on every run.
struct Generator(u64);

impl Generator {
    /// A number in [0, 1).
    fn unit(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        // The top 24 bits, exactly representable in f32.
        (z >> 40) as f32 / (1u64 << 24) as f32
    }
}

fn item(id: String, vector: Vec<f32>, kept: bool) -> Item {
    let group = if kept { "kept" } else { "rejected" };
    Item {
        id,
        vector,
        metadata: json!({ "group": group }),
    }
}

/// The f32 `x` moved `steps` ulps up (or down when negative); `x` is positive here.
fn nudge(x: f32, steps: i32) -> f32 {
    f32::from_bits(x.to_bits().wrapping_add_signed(steps))
}

/// The distance between adjacent f32 values around `x`.
fn ulp32(x: f64) -> f64 {
    let x = (x as f32).abs();
    f64::from(nudge(x, 1) - x)
}

impl NearTies {
    /// The data set for `metric` (see the module doc).
    pub fn new(metric: Metric) -> Self {
        let seed = match metric {
            Metric::Cosine => 1,
            Metric::L2 => 2,
            Metric::Dot => 3,
        };
        let mut generator = Generator(seed);
        let base: Vec<f32> = (0..DIMENSION).map(|_| 0.5 + generator.unit()).collect();
        let offset: Vec<f32> = (0..DIMENSION).map(|_| generator.unit() - 0.5).collect();
        let query: Vec<f32> = base.iter().zip(&offset).map(|(b, o)| b + o).collect();
        let toward = if metric == Metric::Dot {
            &query
        } else {
            &offset
        };
        let along =
            |s: f32| -> Vec<f32> { base.iter().zip(toward).map(|(b, t)| b + s * t).collect() };

        // The component whose one-ulp move changes the distance most, and the direction of the
        // move that takes the record away from the query.
        let at_base = distance(metric, &query, &base);
        let (component, direction) = (0..DIMENSION)
            .map(|i| {
                let mut moved = base.clone();
                moved[i] = nudge(base[i], 1);
                (i, distance(metric, &query, &moved) - at_base)
            })
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .map(|(i, change)| (i, if change > 0.0 { 1 } else { -1 }))
            .expect("the dimension is not zero");

        let mut items = Vec::with_capacity(500);
        for i in 0..6 {
            items.push(item(format!("n{i}"), along(0.02 + 0.01 * i as f32), true));
        }
        for j in 0..TIES {
            let mut v = base.clone();
            let steps = i32::try_from(TIES - j).expect("a small count");
            v[component] = nudge(base[component], direction * steps);
            items.push(item(format!("t{j:02}"), v, true));
        }
        for i in 0..300 {
            items.push(item(
                format!("r{i:03}"),
                along(0.1 + 0.001 * i as f32),
                false,
            ));
        }
        for i in 0..140 {
            items.push(item(
                format!("s{i:03}"),
                along(-0.1 - 0.002 * i as f32),
                false,
            ));
        }
        for i in 0..6 {
            items.push(item(format!("f{i}"), along(-0.7 - 0.05 * i as f32), true));
        }
        Self {
            metric,
            query,
            items,
        }
    }

    /// The f64 distance of a record to the query, as core computes it.
    pub fn distance_of(&self, item: &Item) -> f64 {
        distance(self.metric, &self.query, &item.vector)
    }

    /// The exact answer by brute force: the `k` records passing `filter` with the smallest f64
    /// distance, ties by id bytes, with their distances.
    pub fn expected(&self, k: u64, filter: &Filter) -> Vec<(String, f64)> {
        let mut all: Vec<(String, f64)> = self
            .items
            .iter()
            .filter(|item| item.passes(filter))
            .map(|item| (item.id.clone(), self.distance_of(item)))
            .collect();
        all.sort_by(|a, b| {
            a.1.total_cmp(&b.1)
                .then_with(|| a.0.as_bytes().cmp(b.0.as_bytes()))
        });
        all.truncate(usize::try_from(k).unwrap_or(usize::MAX));
        all
    }

    /// Checks that the data set has the properties the module doc claims; the error names the
    /// first one that fails.
    pub fn check(&self) -> Result<(), String> {
        let of = |prefix: char| -> Vec<f64> {
            self.items
                .iter()
                .filter(|item| item.id.starts_with(prefix))
                .map(|item| self.distance_of(item))
                .collect()
        };
        let (near, ties, rejected_near, rejected_far, far) =
            (of('n'), of('t'), of('r'), of('s'), of('f'));
        let max = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
        let kept = self
            .items
            .iter()
            .filter(|item| item.passes(&kept()))
            .count();
        if self.items.len() < 500 || self.query.len() < 256 || kept * 4 > self.items.len() {
            return Err(format!(
                "{} records of dimension {}, {kept} kept: want at least 500 of at least 256, \
                 and the filter rejecting most",
                self.items.len(),
                self.query.len()
            ));
        }
        // t00 is the farthest, t47 the nearest; each step is far above f64's rounding.
        for (j, pair) in ties.windows(2).enumerate() {
            let gap = pair[0] - pair[1];
            if gap <= 1e-12 * pair[0].abs().max(1.0) {
                return Err(format!(
                    "t{j:02} and t{:02} are not ordered in f64: {} and {}",
                    j + 1,
                    pair[0],
                    pair[1]
                ));
            }
        }
        let spread = max(&ties) - min(&ties);
        let ulp = ulp32(min(&ties));
        if spread > 16.0 * ulp {
            return Err(format!(
                "the ties span {spread}, more than 16 f32 ulps ({ulp} each)"
            ));
        }
        if !(max(&rejected_near) < min(&near)
            && max(&near) < min(&ties)
            && max(&ties) < min(&rejected_far)
            && max(&ties) < min(&far))
        {
            return Err("the groups are not ordered r < n < t < s, f".to_owned());
        }
        // Each search's k-th place is a near tie, and the records up to the last tie are more
        // than TiDB's first window (k + 16 rows), filtered also more than PostgreSQL's (k +
        // max(8, k/4) rows passing the filter).
        for (k, filtered) in SEARCHES {
            let all = self.expected(u64::MAX, &filter_of(filtered));
            let k = usize::try_from(k).expect("a small k");
            if k >= all.len() {
                continue;
            }
            let first_window = if filtered { k + (k / 4).max(8) } else { k + 16 };
            let within = all.iter().filter(|(_, d)| *d <= max(&ties)).count();
            if !all[k - 1].0.starts_with('t') || within <= first_window {
                return Err(format!(
                    "k = {k} (filtered: {filtered}): the k-th place is {} and {within} records \
                     are within the ties, want a tie and more than {first_window}",
                    all[k - 1].0
                ));
            }
        }
        Ok(())
    }
}

/// One search on one metric, and how much a backend's count of a search path
/// (PostgreSQL's second candidate queries, TiDB's widenings) rose during it.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub metric: Metric,
    pub k: u64,
    pub filtered: bool,
    pub counted: u64,
}

/// For every metric: checks the data set, loads it into the collection `ties-{metric}` of
/// `tenant`, runs `searches` (k, filtered: usually [`SEARCHES`]) asserting that each answer is the
/// exact f64 ranking, and drops the collection. `counter` is read before and after each search
/// (`&|| 0` where nothing is counted).
pub async fn run_searches(
    store: &dyn VectorStore,
    tenant: &TenantId,
    searches: &[(u64, bool)],
    counter: &dyn Fn() -> u64,
) -> Vec<Run> {
    let mut runs = Vec::new();
    for metric in METRICS {
        let data = NearTies::new(metric);
        if let Err(problem) = data.check() {
            panic!("the {metric} data set is not what it claims: {problem}");
        }
        let name = CollectionName::new(format!("ties-{metric}")).expect("a valid name");
        let spec = CollectionSpec::new(name.as_str(), DIMENSION as u64, metric).expect("spec");
        store
            .create_collection(tenant, &spec)
            .await
            .expect("create the collection");
        for item in &data.items {
            let metadata = JsonObject::new("metadata", item.metadata.clone()).expect("metadata");
            let id = RecordId::new(item.id.clone()).expect("a valid id");
            upsert(
                store,
                tenant,
                &name,
                &id,
                item.vector.clone(),
                &metadata,
                None,
            )
            .await
            .expect("upsert");
        }
        for &(k, filtered) in searches {
            let filter = filter_of(filtered);
            let before = counter();
            let hits = search(
                store,
                tenant,
                &name,
                data.query.clone(),
                Limit::top_k(k).expect("k"),
                &filter,
            )
            .await
            .expect("search");
            let counted = counter() - before;
            let got: Vec<(String, f64)> = hits
                .into_iter()
                .map(|hit| (hit.id.into_string(), hit.distance))
                .collect();
            assert_eq!(
                got,
                data.expected(k, &filter),
                "{metric}, k = {k}, filtered: {filtered}: the exact f64 ranking"
            );
            runs.push(Run {
                metric,
                k,
                filtered,
                counted,
            });
        }
        store
            .drop_collection(tenant, &name)
            .await
            .expect("drop the collection");
    }
    runs
}
