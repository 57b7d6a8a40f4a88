//! `diffuse eval` on a text model: a fixed prompt set of emoji captions (every noun alone,
//! 48 seen pairs and all 28 held-out pairs, each pair under one of the six relations), sampled
//! and read by the emoji judge. Reports the right object for one-noun prompts, per-object and
//! both-objects accuracy for pairs, and the relation accuracy given both objects were found,
//! separately for seen and held-out pairs, plus "a cat with a computer" on its own line.

use image::RgbImage;
use serde::Serialize;

use crate::data::emoji::{self, Relation, NOUNS};
use crate::error::{Error, Result};
use crate::jobs::eval::{check_sampling, sample_chunk, EvalOptions};
use crate::judge::emoji::{read, Reading};
use crate::model::LoadedModel;
use crate::progress::Progress;
use crate::rng;

/// Which part of the prompt set a prompt belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    Single,
    SeenPair,
    HeldOutPair,
}

impl Group {
    /// The name `--grid-prompts` takes and tables show.
    pub fn name(self) -> &'static str {
        match self {
            Group::Single => "one noun",
            Group::SeenPair => "seen pairs",
            Group::HeldOutPair => "held-out pairs",
        }
    }
}

/// Which prompts [`save_grid`] shows (`--grid-prompts`): all, or one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GridPrompts {
    #[default]
    All,
    Only(Group),
}

impl std::str::FromStr for GridPrompts {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "all" => Ok(GridPrompts::All),
            "single" => Ok(GridPrompts::Only(Group::Single)),
            "seen" => Ok(GridPrompts::Only(Group::SeenPair)),
            "held-out" => Ok(GridPrompts::Only(Group::HeldOutPair)),
            _ => Err(Error::unknown(
                "grid prompts",
                s,
                &["all", "single", "seen", "held-out"],
            )),
        }
    }
}

/// One prompt of the set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalPrompt {
    pub caption: String,
    pub nouns: Vec<usize>,
    pub relation: Option<Relation>,
    pub group: Group,
}

fn pair(a: usize, b: usize, relation: Relation, group: Group) -> EvalPrompt {
    EvalPrompt {
        caption: emoji::caption(a, Some((relation, b))),
        nouns: vec![a, b],
        relation: Some(relation),
        group,
    }
}

/// The fixed prompt set: 24 single nouns; seen pairs {i, i+5} and {i, i+7}; every held-out
/// pair; the k-th pair of a group takes relation k mod 6 (with, and, left of, right of,
/// above, below). The first held-out prompt is "a cat with a computer".
pub fn prompt_set() -> Vec<EvalPrompt> {
    let n = NOUNS.len();
    let mut set: Vec<EvalPrompt> = (0..n)
        .map(|i| EvalPrompt {
            caption: emoji::caption(i, None),
            nouns: vec![i],
            relation: None,
            group: Group::Single,
        })
        .collect();
    let seen = (0..n)
        .map(|i| (i, (i + 5) % n))
        .chain((0..n).map(|i| (i, (i + 7) % n)));
    for (k, (a, b)) in seen.enumerate() {
        set.push(pair(a, b, Relation::ALL[k % 6], Group::SeenPair));
    }
    for (k, (a, b)) in emoji::held_out_pairs().into_iter().enumerate() {
        set.push(pair(a, b, Relation::ALL[k % 6], Group::HeldOutPair));
    }
    set
}

/// Counts for one group of prompts (or one prompt).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    pub samples: usize,
    /// Caption nouns found, out of `objects`.
    pub objects_found: usize,
    pub objects: usize,
    /// Samples with every caption noun found.
    pub all_found: usize,
    /// Spatial-relation samples with both nouns found, and of those, the relation right.
    pub relation_checked: usize,
    pub relation_right: usize,
    /// Samples where the judge found an object the caption does not name.
    pub extra: usize,
}

impl Counts {
    /// Counts one reading.
    pub fn add(&mut self, r: &Reading) {
        self.samples += 1;
        self.objects += r.found.len();
        self.objects_found += r.found.iter().filter(|&&f| f).count();
        self.all_found += usize::from(r.all_found);
        self.extra += usize::from(r.extra);
        if let Some(ok) = r.relation_ok {
            self.relation_checked += 1;
            self.relation_right += usize::from(ok);
        }
    }

    fn ratio(a: usize, b: usize) -> f64 {
        if b == 0 {
            f64::NAN
        } else {
            a as f64 / b as f64
        }
    }

    /// Share of caption nouns found.
    pub fn object_accuracy(&self) -> f64 {
        Self::ratio(self.objects_found, self.objects)
    }
    /// Share of samples with every caption noun found.
    pub fn all_accuracy(&self) -> f64 {
        Self::ratio(self.all_found, self.samples)
    }
    /// Share of samples with an object the caption does not name.
    pub fn extra_rate(&self) -> f64 {
        Self::ratio(self.extra, self.samples)
    }
    /// Share of relation checks passed, given both nouns were found.
    pub fn relation_accuracy(&self) -> f64 {
        Self::ratio(self.relation_right, self.relation_checked)
    }
}

/// One prompt's row.
#[derive(Debug, Clone, Serialize)]
pub struct PromptCounts {
    pub prompt: EvalPrompt,
    pub counts: Counts,
}

/// The result of `diffuse eval` on a text model.
#[derive(Debug, Clone, Serialize)]
pub struct EmojiReport {
    #[serde(flatten)]
    pub options: EvalOptions,
    pub single: Counts,
    pub seen_pairs: Counts,
    pub held_out_pairs: Counts,
    /// "a cat with a computer".
    pub cat_with_computer: Counts,
    pub prompts: Vec<PromptCounts>,
    pub seconds: f64,
    /// Every sample with the index of its prompt in `prompts` and whether the judge read it
    /// right, prompt by prompt.
    #[serde(skip)]
    pub samples: Vec<(usize, RgbImage, bool)>,
}

/// Images sampled per forward batch.
const CHUNK: usize = 32;

/// Samples `samples_per_prompt` images of every prompt of [`prompt_set`] and reads them.
pub fn evaluate(
    model: &LoadedModel,
    opts: &EvalOptions,
    progress: &dyn Progress,
) -> Result<EmojiReport> {
    if model.meta.unet.text.is_none() {
        return Err(Error::Unsupported(
            "the emoji evaluation needs a text model (this one has prompt slots)".into(),
        ));
    }
    let config = check_sampling(model, opts)?;
    let start = std::time::Instant::now();
    let set = prompt_set();
    let ids = set
        .iter()
        .map(|p| crate::prompt::encode(&p.caption, &model.meta.unet))
        .collect::<Result<Vec<_>>>()?;
    let jobs: Vec<usize> = (0..set.len())
        .flat_map(|p| std::iter::repeat_n(p, opts.samples_per_prompt))
        .collect();
    let mut rows: Vec<PromptCounts> = set
        .iter()
        .map(|p| PromptCounts {
            prompt: p.clone(),
            counts: Counts::default(),
        })
        .collect();
    let mut rng = rng::rng(opts.seed);
    let mut samples = Vec::with_capacity(jobs.len());
    progress.stage("sampling", (jobs.len().div_ceil(CHUNK) * opts.steps) as u64);
    for chunk in jobs.chunks(CHUNK) {
        let chunk_ids: Vec<Vec<u32>> = chunk.iter().map(|&p| ids[p].clone()).collect();
        let images = sample_chunk(model, config, opts.guidance, &chunk_ids, &mut rng, progress)?;
        for (img, &p) in images.into_iter().zip(chunk) {
            let reading = read(&img, &set[p].nouns, set[p].relation);
            rows[p].counts.add(&reading);
            let right = reading.all_found && reading.relation_ok != Some(false);
            samples.push((p, img, right));
        }
    }
    progress.finish();
    Ok(summarise(
        *opts,
        rows,
        samples,
        start.elapsed().as_secs_f64(),
    ))
}

/// Sums the rows into the report's groups.
fn summarise(
    options: EvalOptions,
    rows: Vec<PromptCounts>,
    samples: Vec<(usize, RgbImage, bool)>,
    seconds: f64,
) -> EmojiReport {
    let sum = |keep: &dyn Fn(&EvalPrompt) -> bool| {
        let mut c = Counts::default();
        for r in rows.iter().filter(|r| keep(&r.prompt)) {
            c.samples += r.counts.samples;
            c.objects += r.counts.objects;
            c.objects_found += r.counts.objects_found;
            c.all_found += r.counts.all_found;
            c.relation_checked += r.counts.relation_checked;
            c.relation_right += r.counts.relation_right;
            c.extra += r.counts.extra;
        }
        c
    };
    let cat_computer = emoji::caption(0, Some((Relation::With, 2)));
    EmojiReport {
        options,
        single: sum(&|p| p.group == Group::Single),
        seen_pairs: sum(&|p| p.group == Group::SeenPair),
        held_out_pairs: sum(&|p| p.group == Group::HeldOutPair),
        cat_with_computer: sum(&|p| p.caption == cat_computer),
        prompts: rows,
        seconds,
        samples,
    }
}

/// Blurs (Gaussian σ in pixels) under which the self-test also reads the scenes, without
/// noise: model samples are softer than the sprites.
pub const SELF_TEST_BLURS: [f64; 2] = [1.0, 2.0];

/// The judge's accuracy on fresh dataset scenes at one noise level or blur.
#[derive(Debug, Clone, Serialize)]
pub struct SelfTestRow {
    pub noise_sigma: f64,
    pub blur_sigma: f64,
    pub single: Counts,
    pub pairs: Counts,
}

/// Reads `count` fresh dataset scenes (seed `seed`) at each noise level, then at each of
/// `blurs` without noise.
pub fn self_test(
    count: usize,
    seed: u64,
    sigmas: &[f64],
    blurs: &[f64],
) -> Result<Vec<SelfTestRow>> {
    let all = sigmas.iter().chain(blurs);
    if let Some(&bad) = all.into_iter().find(|s| !(s.is_finite() && **s >= 0.0)) {
        return Err(Error::option_is("sigma", bad, "must be a number ≥ 0"));
    }
    let scenes = emoji::render_range(seed, 0, count);
    let conditions = sigmas
        .iter()
        .map(|&s| (s, 0.0))
        .chain(blurs.iter().map(|&b| (0.0, b)));
    let mut out = Vec::new();
    for (sigma, blur) in conditions {
        let mut r = rng::rng(seed ^ 0x5eed);
        let (mut single, mut pairs) = (Counts::default(), Counts::default());
        for (scene, img) in &scenes {
            let soft = crate::judge::emoji::blurred(img, blur as f32);
            let noisy = crate::jobs::eval::add_noise(&soft, sigma, &mut r);
            let nouns: Vec<usize> = scene.objects.iter().map(|o| o.noun).collect();
            let reading = read(&noisy, &nouns, scene.relation);
            match nouns.len() {
                1 => single.add(&reading),
                _ => pairs.add(&reading),
            }
        }
        out.push(SelfTestRow {
            noise_sigma: sigma,
            blur_sigma: blur,
            single,
            pairs,
        });
    }
    Ok(out)
}

/// Saves the samples of `report`'s prompts in `which` as one picture under a title with the
/// group's accuracy: a row per prompt, labelled with the prompt and how many of its samples
/// the judge read right, the samples side by side and the ones it got wrong framed in red.
pub fn save_grid(report: &EmojiReport, which: GridPrompts, path: &std::path::Path) -> Result<()> {
    let shown = |p: &EvalPrompt| which == GridPrompts::All || which == GridPrompts::Only(p.group);
    let mut rows = Vec::new();
    for (i, row) in report.prompts.iter().enumerate() {
        if !shown(&row.prompt) {
            continue;
        }
        let cells: Vec<RgbImage> = report
            .samples
            .iter()
            .filter(|(p, _, _)| *p == i)
            .map(|(_, img, right)| {
                let mut cell = img.clone();
                if !right {
                    crate::render::mark_wrong(&mut cell);
                }
                cell
            })
            .collect();
        let refs: Vec<&RgbImage> = cells.iter().collect();
        let right = report
            .samples
            .iter()
            .filter(|(p, _, r)| *p == i && *r)
            .count();
        let label = format!("{}  {right}/{}", row.prompt.caption, cells.len());
        rows.push((label, crate::render::grid(&refs, refs.len(), 2, None)));
    }
    let title = match which {
        GridPrompts::All => format!(
            "{} samples; red frame: the judge did not read the caption",
            report.samples.len()
        ),
        GridPrompts::Only(group) => {
            let c = match group {
                Group::Single => &report.single,
                Group::SeenPair => &report.seen_pairs,
                Group::HeldOutPair => &report.held_out_pairs,
            };
            format!(
                "{}: all objects found in {:.1}% of {} samples",
                group.name(),
                100.0 * c.all_accuracy(),
                c.samples
            )
        }
    };
    crate::render::save_png(&crate::render::labelled_rows(&title, &rows), path)
}
