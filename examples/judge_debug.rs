//! Development aid: the emoji judge's best matches. `judge_debug N` prints its misreadings of
//! N clean dataset scenes; `judge_debug FILE.png ...` prints its four best matches per picture.
use diffuse::data::emoji::{self, NOUNS};
use diffuse::judge::emoji::{best_matches, read};

/// The four best matches of a picture, best first.
fn best_four(img: &image::RgbImage) -> Vec<String> {
    let mut m = best_matches(img);
    m.sort_by(|a, b| a.error.total_cmp(&b.error));
    m.iter()
        .take(4)
        .map(|d| {
            let name = NOUNS[d.noun].name;
            format!("{name}@{},{} s{} e{:.0}", d.x, d.y, d.side, d.error)
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(n) = args.first().and_then(|s| s.parse::<usize>().ok()) {
        for (i, (scene, img)) in emoji::render_range(4242, 0, n).into_iter().enumerate() {
            let nouns: Vec<usize> = scene.objects.iter().map(|o| o.noun).collect();
            if read(&img, &nouns, scene.relation).all_found {
                continue;
            }
            let truth: Vec<String> = scene
                .objects
                .iter()
                .map(|o| format!("{}@{},{} s{}", NOUNS[o.noun].name, o.x, o.y, o.side))
                .collect();
            println!("{i}: truth {truth:?} got {:?}", best_four(&img));
        }
        return;
    }
    for path in &args {
        match image::open(path) {
            Ok(img) => println!("{path}: {:?}", best_four(&img.to_rgb8())),
            Err(e) => eprintln!("{path}: {e}"),
        }
    }
}
