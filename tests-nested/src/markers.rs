//! Checking a serial log against expected markers.
//!
//! A [`Pattern`] is a glob (`*` matches any text) looked for anywhere in a
//! line. [`Expectations`] is an ordered list of steps; each step holds one or
//! more chains that may interleave with each other (CPUs coming online, one
//! domain's lines and another's), while the patterns of one chain must match
//! in order. A step begins only after the previous one is complete. Forbidden
//! patterns fail the run as soon as any line matches them.

use std::fmt;

/// A glob over one line: `*` matches any run of characters; the whole pattern
/// may match anywhere in the line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    /// A pattern from glob text.
    pub fn new(glob: impl Into<String>) -> Self {
        Self(glob.into())
    }

    /// The glob text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `line` contains text matching the glob.
    pub fn matches(&self, line: &str) -> bool {
        let mut rest = line;
        for part in self.0.split('*').filter(|p| !p.is_empty()) {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
        true
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`", self.0)
    }
}

/// The markers a run must show, in order, and those it must never show.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expectations {
    steps: Vec<Vec<Vec<Pattern>>>,
    forbidden: Vec<Pattern>,
    /// Why each forbidden pattern fails the run (same index), for the report.
    why: Vec<Option<String>>,
}

impl Expectations {
    /// No expectations yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a step of one pattern.
    #[must_use]
    pub fn then(mut self, glob: &str) -> Self {
        self.steps.push(vec![vec![Pattern::new(glob)]]);
        self
    }

    /// Adds a step of chains that may interleave; each chain is ordered.
    #[must_use]
    pub fn then_all(mut self, chains: Vec<Vec<String>>) -> Self {
        let step: Vec<Vec<Pattern>> = chains
            .into_iter()
            .filter(|c| !c.is_empty())
            .map(|c| c.into_iter().map(Pattern::new).collect())
            .collect();
        if !step.is_empty() {
            self.steps.push(step);
        }
        self
    }

    /// Adds a pattern no line may match.
    #[must_use]
    pub fn never(mut self, glob: &str) -> Self {
        self.forbidden.push(Pattern::new(glob));
        self.why.push(None);
        self
    }

    /// Adds a pattern no line may match, with the cause a failure report names
    /// (e.g. "the guest kernel panicked").
    #[must_use]
    pub fn never_because(mut self, glob: &str, why: &str) -> Self {
        self.forbidden.push(Pattern::new(glob));
        self.why.push(Some(why.to_string()));
        self
    }

    /// The cause given for forbidden pattern `p`, if any.
    pub fn why(&self, p: &Pattern) -> Option<&str> {
        let i = self.forbidden.iter().position(|f| f == p)?;
        self.why.get(i)?.as_deref()
    }

    /// The forbidden patterns.
    pub fn forbidden(&self) -> &[Pattern] {
        &self.forbidden
    }

    /// Every expected pattern in step order (chains one after another).
    pub fn expected(&self) -> impl Iterator<Item = &Pattern> {
        self.steps.iter().flatten().flatten()
    }
}

/// Feeds log lines through [`Expectations`].
#[derive(Clone, Debug)]
pub struct Matcher {
    exp: Expectations,
    step: usize,
    /// Position reached in each chain of the current step.
    pos: Vec<usize>,
    violations: Vec<(Pattern, String)>,
}

impl Matcher {
    /// A matcher at the start of `exp`.
    pub fn new(exp: Expectations) -> Self {
        let pos = vec![0; exp.steps.first().map_or(0, Vec::len)];
        Self {
            exp,
            step: 0,
            pos,
            violations: Vec::new(),
        }
    }

    /// Consumes one line of output.
    pub fn feed(&mut self, line: &str) {
        for f in &self.exp.forbidden {
            if f.matches(line) {
                self.violations.push((f.clone(), line.to_string()));
            }
        }
        let Some(step) = self.exp.steps.get(self.step) else {
            return;
        };
        // A line advances at most one chain: the first whose next pattern matches.
        let hit = step
            .iter()
            .zip(self.pos.iter())
            .position(|(chain, &p)| chain.get(p).is_some_and(|pat| pat.matches(line)));
        if let Some(pos) = hit.and_then(|c| self.pos.get_mut(c)) {
            *pos += 1;
        }
        let complete = step
            .iter()
            .zip(self.pos.iter())
            .all(|(chain, &p)| p >= chain.len());
        if complete {
            self.step += 1;
            self.pos = vec![0; self.exp.steps.get(self.step).map_or(0, Vec::len)];
        }
    }

    /// The expectations being matched.
    pub fn expectations(&self) -> &Expectations {
        &self.exp
    }

    /// Whether every expected marker has been seen.
    pub fn complete(&self) -> bool {
        self.step >= self.exp.steps.len()
    }

    /// Lines that matched a forbidden pattern, with that pattern.
    pub fn violations(&self) -> &[(Pattern, String)] {
        &self.violations
    }

    /// The next pattern each unfinished chain of the current step waits for.
    pub fn waiting_for(&self) -> Vec<&Pattern> {
        let Some(step) = self.exp.steps.get(self.step) else {
            return Vec::new();
        };
        step.iter()
            .zip(self.pos.iter())
            .filter_map(|(chain, &p)| chain.get(p))
            .collect()
    }

    /// How many expected markers have been matched so far, of how many.
    pub fn progress(&self) -> (usize, usize) {
        let total = self.exp.expected().count();
        let before: usize = self
            .exp
            .steps
            .iter()
            .take(self.step)
            .flatten()
            .map(Vec::len)
            .sum();
        (before + self.pos.iter().sum::<usize>(), total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn exp() -> Expectations {
        Expectations::new()
            .then("hv: hv * booting at EL2 (VHE)")
            .then_all(vec![
                s(&["hv: CPU0 online"]),
                s(&["hv: CPU1 online"]),
                s(&["(d1) hello", "hv: d1 ended ("]),
                s(&["(d2) hello", "(d2) all checks passed", "hv: d2 ended ("]),
            ])
            .then("hv: all domains ended, powering off")
            .never("panicked at")
    }

    fn run(lines: &[&str]) -> Matcher {
        let mut m = Matcher::new(exp());
        for l in lines {
            m.feed(l);
        }
        m
    }

    #[test]
    fn globs_match_anywhere_in_order() {
        let p = Pattern::new("hv: hv * booting at EL2 (VHE)");
        assert!(p.matches("[0.001] hv: hv 0.1.0 booting at EL2 (VHE)"));
        assert!(!p.matches("hv: hv 0.1.0 booting at EL2 (nVHE)"));
        assert!(!p.matches("booting at EL2 (VHE) hv: hv "));
        assert!(Pattern::new("a*b*c").matches("xxaYYbZZc"));
        assert!(!Pattern::new("a*b*c").matches("c b a"));
        assert!(Pattern::new("").matches("anything"));
    }

    #[test]
    fn interleaved_chains_complete() {
        let m = run(&[
            "hv: hv 0.1.0 booting at EL2 (VHE)",
            "hv: CPU0 online",
            "(d2) hello",
            "(d1) hello",
            "hv: CPU1 online",
            "(d2) all checks passed",
            "hv: d1 ended (crash)",
            "hv: d2 ended (poweroff)",
            "hv: all domains ended, powering off",
        ]);
        assert!(m.complete());
        assert!(m.violations().is_empty());
        assert_eq!(m.progress(), (9, 9));
    }

    #[test]
    fn order_within_a_chain_is_enforced() {
        let m = run(&[
            "hv: hv 0.1.0 booting at EL2 (VHE)",
            "hv: CPU0 online",
            "hv: CPU1 online",
            "(d1) hello",
            "hv: d2 ended (poweroff)",
            "(d2) hello",
            "(d2) all checks passed",
            "hv: d1 ended (crash)",
            "hv: all domains ended, powering off",
        ]);
        assert!(!m.complete());
        let waiting: Vec<_> = m.waiting_for().iter().map(|p| p.as_str()).collect();
        assert_eq!(waiting, vec!["hv: d2 ended ("]);
    }

    #[test]
    fn steps_do_not_start_early() {
        // The final marker before the CPUs are online does not count.
        let m = run(&[
            "hv: all domains ended, powering off",
            "hv: hv 0.1.0 booting at EL2 (VHE)",
            "hv: CPU0 online",
        ]);
        assert!(!m.complete());
        assert_eq!(m.waiting_for().len(), 3);
    }

    #[test]
    fn missing_cpu_is_reported() {
        let m = run(&[
            "hv: hv 0.1.0 booting at EL2 (VHE)",
            "hv: CPU0 online",
            "(d1) hello",
            "hv: d1 ended (crash)",
            "(d2) hello",
            "(d2) all checks passed",
            "hv: d2 ended (poweroff)",
            "hv: all domains ended, powering off",
        ]);
        assert!(!m.complete());
        let waiting: Vec<_> = m.waiting_for().iter().map(|p| p.as_str()).collect();
        assert_eq!(waiting, vec!["hv: CPU1 online"]);
        assert_eq!(m.progress(), (7, 9));
    }

    #[test]
    fn forbidden_lines_are_recorded_even_when_complete() {
        let m = run(&[
            "hv: hv 0.1.0 booting at EL2 (VHE)",
            "hv: CPU0 online",
            "hv: CPU1 online",
            "(d1) hello",
            "hv: d1 ended (crash)",
            "(d2) hello",
            "(d2) all checks passed",
            "hv: d2 ended (poweroff)",
            "hv: all domains ended, powering off",
            "hv: panicked at src/x.rs:1",
        ]);
        assert!(m.complete());
        assert_eq!(m.violations().len(), 1);
        assert_eq!(m.violations()[0].1, "hv: panicked at src/x.rs:1");
    }

    #[test]
    fn empty_chains_are_dropped() {
        let e = Expectations::new().then_all(vec![vec![], s(&["x"])]);
        let mut m = Matcher::new(e);
        assert!(!m.complete());
        m.feed("x");
        assert!(m.complete());
        assert!(Matcher::new(Expectations::new().then_all(vec![vec![]])).complete());
    }
}
