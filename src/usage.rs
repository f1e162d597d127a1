//! The token usage of one answer, in its provider's own breakdown: what spend, budgets and
//! the ledger price, and what rate limits count.
//!
//! OpenAI's shape folds several prices into one number (`prompt_tokens` includes cached
//! tokens; Anthropic's cache writes, billed above the input rate, have no OpenAI field at
//! all), so each adapter fills this from its provider's own fields instead of from the
//! OpenAI-shaped usage it sends the client. Every count is a number of tokens the provider
//! bills separately; together they are the whole answer.

/// One answer's tokens, each at its own price.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// Input tokens at the plain input rate: neither read from nor written to a cache.
    pub input: u64,
    /// Input tokens read from the provider's prompt cache.
    pub cache_read: u64,
    /// Input tokens written to the prompt cache for 5 minutes (Anthropic's default
    /// lifetime; other providers' implicit cache writes are not billed separately).
    pub cache_write_5m: u64,
    /// Input tokens written to the prompt cache for 1 hour.
    pub cache_write_1h: u64,
    /// Output tokens, reasoning included.
    pub output: u64,
    /// Of `output`, those spent reasoning (billed at the reasoning rate where a model
    /// has one, else at the output rate).
    pub reasoning: u64,
}

impl Usage {
    /// Every input token, whatever its price: OpenAI's `prompt_tokens` for this answer.
    pub fn prompt_tokens(&self) -> u64 {
        self.input
            .saturating_add(self.cache_read)
            .saturating_add(self.cache_write_5m)
            .saturating_add(self.cache_write_1h)
    }

    /// Input and output: what a tokens-per-minute limit counts.
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens().saturating_add(self.output)
    }

    /// This answer's tokens added to `self` (the attempts of one request).
    pub fn add(&mut self, other: &Usage) {
        self.input = self.input.saturating_add(other.input);
        self.cache_read = self.cache_read.saturating_add(other.cache_read);
        self.cache_write_5m = self.cache_write_5m.saturating_add(other.cache_write_5m);
        self.cache_write_1h = self.cache_write_1h.saturating_add(other.cache_write_1h);
        self.output = self.output.saturating_add(other.output);
        self.reasoning = self.reasoning.saturating_add(other.reasoning);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_count_every_input_token_once() {
        let u = Usage { input: 10, cache_read: 100, cache_write_5m: 5, cache_write_1h: 1, output: 7, reasoning: 3 };
        assert_eq!((u.prompt_tokens(), u.total_tokens()), (116, 123));
        let mut sum = u;
        sum.add(&u);
        assert_eq!((sum.total_tokens(), sum.reasoning), (246, 6));
        let max = Usage { input: u64::MAX, ..u };
        assert_eq!(max.total_tokens(), u64::MAX, "saturates, never wraps");
    }
}
