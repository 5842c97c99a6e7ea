//! Head merging: which original heads become one merged head.
//!
//! *Similarity* grouping (MARILL §5): the distance between two heads is the Jensen–Shannon
//! distance (square root of the divergence, natural log) between their attention
//! distributions, averaged over the query positions of a calibration batch; K-medoids
//! splits the `h` heads into `h/m` clusters; since clusters need not have `m` members, a
//! linear sum assignment then gives each medoid exactly `m` heads (each medoid becomes `m`
//! slots, the cost of a head in a slot is its distance to the slot's medoid, and the
//! Hungarian algorithm finds the cheapest one-to-one assignment). *Adjacent* grouping, the
//! ablation, merges heads `0..m`, `m..2m`, ….

/// Jensen–Shannon distance between two distributions.
pub fn js_distance(p: &[f32], q: &[f32]) -> f64 {
    let mut d = 0.0;
    for (&a, &b) in p.iter().zip(q) {
        let (a, b) = (f64::from(a), f64::from(b));
        let m = 0.5 * (a + b);
        if a > 0.0 {
            d += 0.5 * a * (a / m).ln();
        }
        if b > 0.0 {
            d += 0.5 * b * (b / m).ln();
        }
    }
    d.max(0.0).sqrt()
}

/// Pairwise head distances from attention probabilities `probs[head][row][col]` (rows are
/// the calibration batch's query positions, each a distribution).
pub fn head_distances(probs: &[Vec<Vec<f32>>]) -> Vec<Vec<f64>> {
    let h = probs.len();
    let mut d = vec![vec![0.0; h]; h];
    for i in 0..h {
        for j in i + 1..h {
            let rows = probs[i].len().max(1);
            let s: f64 = probs[i].iter().zip(&probs[j]).map(|(p, q)| js_distance(p, q)).sum();
            d[i][j] = s / rows as f64;
            d[j][i] = d[i][j];
        }
    }
    d
}

/// K-medoids (alternating assignment and medoid update) on a distance matrix: `k` medoids,
/// initialised deterministically (the most central point, then farthest-first).
pub fn k_medoids(d: &[Vec<f64>], k: usize) -> Vec<usize> {
    let n = d.len();
    let k = k.clamp(1, n.max(1));
    let central = (0..n).min_by(|&a, &b| d[a].iter().sum::<f64>().total_cmp(&d[b].iter().sum::<f64>())).unwrap_or(0);
    let mut med = vec![central];
    while med.len() < k {
        let far = (0..n)
            .filter(|i| !med.contains(i))
            .max_by(|&a, &b| {
                let da = med.iter().map(|&m| d[a][m]).fold(f64::MAX, f64::min);
                let db = med.iter().map(|&m| d[b][m]).fold(f64::MAX, f64::min);
                da.total_cmp(&db)
            })
            .unwrap_or(0);
        med.push(far);
    }
    for _ in 0..100 {
        let assign: Vec<usize> =
            (0..n).map(|i| (0..k).min_by(|&a, &b| d[i][med[a]].total_cmp(&d[i][med[b]])).unwrap_or(0)).collect();
        let mut changed = false;
        for c in 0..k {
            let members: Vec<usize> = (0..n).filter(|&i| assign[i] == c).collect();
            if members.is_empty() {
                continue;
            }
            let best = members
                .iter()
                .copied()
                .min_by(|&a, &b| {
                    let sa: f64 = members.iter().map(|&j| d[a][j]).sum();
                    let sb: f64 = members.iter().map(|&j| d[b][j]).sum();
                    sa.total_cmp(&sb)
                })
                .unwrap_or(med[c]);
            if best != med[c] {
                med[c] = best;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    med
}

/// Minimum-cost perfect assignment of rows to columns of a square cost matrix (Hungarian
/// algorithm with potentials, O(n³)); returns the column of each row.
pub fn hungarian(cost: &[Vec<f64>]) -> Vec<usize> {
    let n = cost.len();
    let inf = f64::INFINITY;
    // 1-based potentials and matching, column 0 is a sentinel.
    let mut u = vec![0.0; n + 1];
    let mut v = vec![0.0; n + 1];
    let mut p = vec![0usize; n + 1];
    let mut way = vec![0usize; n + 1];
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0;
        let mut minv = vec![inf; n + 1];
        let mut used = vec![false; n + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = inf;
            let mut j1 = 0;
            for j in 1..=n {
                if !used[j] {
                    let cur = cost[i0 - 1][j - 1] - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=n {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut col = vec![0; n];
    for j in 1..=n {
        if p[j] > 0 {
            col[p[j] - 1] = j - 1;
        }
    }
    col
}

/// Groups of `m` heads by similarity (distance matrix `d` over `h` heads, `m | h`). Each
/// group is sorted; groups are ordered by their smallest head.
pub fn similarity_groups(d: &[Vec<f64>], m: usize) -> Vec<Vec<u32>> {
    let h = d.len();
    let k = h / m;
    let med = k_medoids(d, k);
    // Slot s belongs to medoid s / m.
    let cost: Vec<Vec<f64>> = (0..h).map(|i| (0..h).map(|s| d[i][med[s / m]]).collect()).collect();
    let slot = hungarian(&cost);
    let mut groups = vec![Vec::new(); k];
    for (i, s) in slot.iter().enumerate() {
        groups[s / m].push(i as u32);
    }
    for g in &mut groups {
        g.sort_unstable();
    }
    groups.sort();
    groups
}

/// Heads `0..m`, `m..2m`, ….
pub fn adjacent_groups(h: usize, m: usize) -> Vec<Vec<u32>> {
    (0..h / m).map(|g| (g * m..(g + 1) * m).map(|x| x as u32).collect()).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hungarian_finds_the_optimum() {
        // Brute force over all permutations of 5.
        let c: Vec<Vec<f64>> = (0..5)
            .map(|i| (0..5).map(|j| ((i * 7 + j * 13) % 11) as f64 + (i as f64 - j as f64).abs()).collect())
            .collect();
        let a = hungarian(&c);
        let cost = |p: &[usize]| -> f64 { p.iter().enumerate().map(|(i, &j)| c[i][j]).sum() };
        let mut best = f64::MAX;
        let mut perm: Vec<usize> = (0..5).collect();
        fn permute(k: usize, p: &mut Vec<usize>, f: &mut dyn FnMut(&[usize])) {
            if k == p.len() {
                f(p);
                return;
            }
            for i in k..p.len() {
                p.swap(k, i);
                permute(k + 1, p, f);
                p.swap(k, i);
            }
        }
        permute(0, &mut perm, &mut |p| best = best.min(cost(p)));
        let mut seen = a.clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..5).collect::<Vec<_>>());
        assert!((cost(&a) - best).abs() < 1e-12, "{} vs {best}", cost(&a));
    }

    #[test]
    fn similar_heads_are_grouped() {
        // Heads 0,3 / 1,5 / 2,4 attend alike (to columns 0, 1, 2).
        let pattern = [0usize, 1, 2, 0, 2, 1];
        let probs: Vec<Vec<Vec<f32>>> = pattern
            .iter()
            .map(|&c| (0..4).map(|_| (0..3).map(|j| if j == c { 0.9 } else { 0.05 }).collect()).collect())
            .collect();
        let d = head_distances(&probs);
        assert!(d[0][3] < 1e-9 && d[0][1] > 0.3);
        assert_eq!(similarity_groups(&d, 2), vec![vec![0, 3], vec![1, 5], vec![2, 4]]);
        assert_eq!(adjacent_groups(6, 3), vec![vec![0, 1, 2], vec![3, 4, 5]]);
    }

    #[test]
    fn js_distance_bounds() {
        assert!(js_distance(&[0.5, 0.5], &[0.5, 0.5]).abs() < 1e-12);
        let d = js_distance(&[1.0, 0.0], &[0.0, 1.0]);
        assert!((d - std::f64::consts::LN_2.sqrt()).abs() < 1e-12);
    }
}
