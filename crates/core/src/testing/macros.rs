//! The macros that turn the suite's cases into one `#[test]` each in an adapter's crate.

/// Expands to one `#[test]` per case of module `testing::$module`, each with a fresh
/// harness from `$make`.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($module:ident, $make:expr, $($case:ident),+ $(,)?) => {
        $(
            #[test]
            fn $case() {
                let mut harness = $make;
                $crate::testing::$module::$case(&mut harness);
            }
        )+
    };
}

/// Every log store case of the conformance suite, as `#[test]` functions named after
/// their stories. `$make` is an expression that makes a fresh
/// [`LogStoreHarness`](crate::testing::LogStoreHarness); it is evaluated once per case.
#[macro_export]
macro_rules! log_store_conformance_tests {
    ($make:expr) => {
        mod log_ranges {
            #[allow(unused_imports)]
            use super::*;
            $crate::__conformance_tests!(
                log_ranges,
                $make,
                a_new_store_is_empty_and_starts_at_index_one,
                term_of_answers_every_held_index_and_the_last_purged_one,
                reading_a_purged_index_is_compacted_never_a_panic,
                reading_past_the_end_is_unavailable_never_a_panic,
                an_empty_range_reads_as_no_entries,
            );
        }
        mod log_writes {
            #[allow(unused_imports)]
            use super::*;
            $crate::__conformance_tests!(
                log_writes,
                $make,
                append_refuses_a_gap_an_overlap_or_a_falling_term_and_changes_nothing,
                truncate_suffix_removes_the_tail_and_the_log_continues_from_there,
                truncating_purged_entries_is_misuse_and_past_the_end_is_a_no_op,
                purge_prefix_keeps_the_tail_and_remembers_the_purged_id,
                purging_past_the_end_empties_the_log_which_continues_after_the_purged_id,
                purging_at_or_below_the_purged_id_is_a_no_op,
                hard_state_round_trips_including_extreme_values,
            );
        }
        mod log_durability {
            #[allow(unused_imports)]
            use super::*;
            $crate::__conformance_tests!(
                log_durability,
                $make,
                synced_entries_and_hard_state_survive_a_reopen,
                unsynced_writes_are_visible_at_once_and_gone_after_a_reopen,
                one_sync_makes_every_earlier_write_durable_together,
                synced_truncation_and_overwrite_survive_a_reopen,
                synced_purge_survives_a_reopen_with_the_purged_term,
                a_reopened_log_accepts_appends_where_it_left_off,
                a_sync_with_nothing_to_write_succeeds_and_changes_nothing,
            );
        }
        mod log_payloads {
            #[allow(unused_imports)]
            use super::*;
            $crate::__conformance_tests!(
                log_payloads,
                $make,
                empty_noop_membership_and_one_mebibyte_payloads_round_trip,
                one_hundred_thousand_entries_round_trip_through_a_reopen,
            );
        }
    };
}

/// Every state store case of the conformance suite, as `#[test]` functions named after
/// their stories. `$make` makes a fresh
/// [`StateStoreHarness`](crate::testing::StateStoreHarness) for each case. The
/// cross-adapter case, which needs a store of another adapter, is called directly:
/// [`imports_and_exports_across_adapters`](crate::testing::state_store::imports_and_exports_across_adapters).
#[macro_export]
macro_rules! state_store_conformance_tests {
    ($make:expr) => {
        mod state_store {
            #[allow(unused_imports)]
            use super::*;
            $crate::__conformance_tests!(
                state_store,
                $make,
                a_new_state_store_is_empty,
                a_batch_applies_puts_and_deletes_in_order_with_its_applied_id,
                an_applied_id_below_the_current_one_is_misuse_and_changes_nothing,
                range_honours_inclusive_start_exclusive_end_and_limit,
                batches_survive_a_reopen,
                deferred_batches_are_visible_at_once_and_durable_after_sync,
                empty_and_one_mebibyte_values_round_trip,
                export_then_import_into_a_fresh_store_reproduces_it_exactly,
                import_replaces_the_whole_content_and_survives_a_reopen,
                a_malformed_import_is_corrupt_and_changes_nothing,
            );
        }
    };
}
