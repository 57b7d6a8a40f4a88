//! Development aid: prints the emoji judge's misreadings of clean dataset scenes.
use diffuse::data::emoji::{self, NOUNS};
use diffuse::judge::emoji::{best_matches, read};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    for (i, (scene, img)) in emoji::render_range(4242, 0, n).into_iter().enumerate() {
        let nouns: Vec<usize> = scene.objects.iter().map(|o| o.noun).collect();
        let r = read(&img, &nouns, scene.relation);
        if !r.all_found {
            let mut m = best_matches(&img);
            m.sort_by(|a, b| a.error.total_cmp(&b.error));
            let truth: Vec<String> = scene
                .objects
                .iter()
                .map(|o| format!("{}@{},{} s{}", NOUNS[o.noun].name, o.x, o.y, o.side))
                .collect();
            let got: Vec<String> = m
                .iter()
                .take(4)
                .map(|d| {
                    format!(
                        "{}@{},{} s{} e{:.0}",
                        NOUNS[d.noun].name, d.x, d.y, d.side, d.error
                    )
                })
                .collect();
            println!("{i}: truth {truth:?} got {got:?}");
        }
    }
}
