"""Each rule of shared/design/OCPP-NOTES.md under Framing, Boot, Transactions, Status and Security
profiles, and the tests that prove it. The test below fails when a named test disappears."""

from __future__ import annotations

import importlib

import pytest

IT = "tests.integration.edge."
UT = "tests.unit.edge."

RULES: dict[str, dict[str, list[str]]] = {
    "Framing": {
        "connect to <endpoint>/<chargePointId> (percent-encoded) with subprotocol ocpp1.6": [
            UT + "test_ocpp_framing::test_the_charger_id_is_the_percent_decoded_last_path_level",
            IT + "test_ocpp_central_system::test_unknown_charger_gets_http_404_unless_unknown_chargers_are_accepted"],
        "an unknown charger id gets HTTP 404 at the handshake": [
            IT + "test_ocpp_central_system::test_unknown_charger_gets_http_404_unless_unknown_chargers_are_accepted"],
        "no acceptable subprotocol: complete the handshake without one and close": [
            IT + "test_ocpp_central_system::test_a_connection_without_the_ocpp16_subprotocol_is_closed"],
        "CALL / CALLRESULT / CALLERROR frames, details {} when empty": [
            IT + "test_ocpp_central_system::test_malformed_frames_get_1_6_call_errors_and_the_connection_stays_up",
            UT + "test_ocpp_framing::test_a_malformed_call_with_a_readable_id_gets_formation_violation"],
        "ids of at most 36 characters, unique per sender per connection": [
            IT + "test_ocpp_profiles::"
                "test_rule_framing_one_outstanding_call_per_connection_with_unique_ids_of_at_most_36_characters"],
        "an unknown message type number is ignored": [
            IT + "test_ocpp_central_system::test_malformed_frames_get_1_6_call_errors_and_the_connection_stays_up",
            UT + "test_ocpp_framing::test_frames_without_a_call_id_are_dropped_quietly"],
        "at most one outstanding CALL per direction per connection": [
            IT + "test_ocpp_profiles::"
                "test_rule_framing_one_outstanding_call_per_connection_with_unique_ids_of_at_most_36_characters",
            IT + "test_ocpp_profiles::test_a_charger_that_does_not_answer_gives_504_and_a_later_answer_is_dropped"],
        "never await your own CALL inside that charger's handler: answer first, then act": [
            IT + "test_security_profiles::"
                "test_an_unknown_charger_is_registered_as_pending_until_an_operator_accepts_it"],
        "1.6 error code spellings on the wire": [
            UT + "test_ocpp_framing::test_schema_errors_go_out_with_the_1_6_spelling",
            IT + "test_fuzz_frames::test_thousands_of_random_frames_never_crash_the_edge_or_lose_a_transaction"],
        "CALLs before an accepted boot get SecurityError": [
            IT + "test_ocpp_central_system::"
                "test_calls_before_an_accepted_boot_get_security_error_but_a_reconnect_keeps_acceptance"],
    },
    "Boot": {
        "Accepted with interval and the current UTC time": [
            IT + "test_ocpp_central_system::test_boot_notification_is_accepted_with_heartbeat_interval_and_utc_time"],
        "Pending: nothing until accepted, no remote start/stop": [
            IT + "test_security_profiles::"
                "test_an_unknown_charger_is_registered_as_pending_until_an_operator_accepts_it",
            IT + "test_cloud_commands::"
                "test_a_rejecting_a_missing_or_a_pending_charger_gives_rejected_or_failed_results"],
        "Rejected: silent until interval passes": [
            UT + "test_site::test_rule_boot_a_charger_unknown_at_boot_time_is_rejected_and_told_when_to_retry"],
        "timestamps are UTC; 1970 timestamps accepted, flagged, never corrupt bills": [
            IT + "test_ocpp_central_system::"
                "test_timestamps_from_an_unset_clock_are_accepted_flagged_and_never_give_negative_durations"],
        "state survives a reconnect without a new BootNotification": [
            IT + "test_ocpp_central_system::"
                "test_calls_before_an_accepted_boot_get_security_error_but_a_reconnect_keeps_acceptance",
            IT + "test_crash_recovery::"
                "test_a_transaction_survives_a_kill_9_of_the_edge_and_reaches_the_cloud_exactly_once"],
    },
    "Transactions": {
        "transactionIds are unique positive integers, never reused, surviving restarts": [
            IT + "test_ocpp_central_system::test_transaction_ids_survive_an_edge_restart",
            UT + "test_store::test_transaction_ids_are_never_reused_after_delete_and_reopen"],
        "Start/Stop/MeterValues are always answered with a CALLRESULT": [
            IT + "test_fuzz_frames::test_thousands_of_random_frames_never_crash_the_edge_or_lose_a_transaction",
            UT + "test_site::test_start_on_connector_zero_is_answered_invalid_and_not_relayed"],
        "the idTag is re-validated in StartTransaction": [
            IT + "test_ocpp_central_system::test_start_transaction_revalidates_the_id_tag_and_still_answers",
            IT + "test_authorization::test_authorize_and_start_answer_every_status_of_the_local_list"],
        "a stop with an unknown transactionId or -1 is accepted and reconciled": [
            IT + "test_ocpp_central_system::"
                "test_stop_of_unknown_or_minus_one_transaction_is_answered_and_reconciled_once"],
        "repeated Start/Stop create no second session or bill": [
            IT + "test_ocpp_central_system::"
                "test_repeated_start_transaction_gets_the_same_transaction_id_without_a_second_session",
            IT + "test_ocpp_central_system::test_repeated_stop_is_relayed_once_and_negative_energy_is_never_billed"],
        "reason and idTag optional; transactionData carries meter values": [
            IT + "test_ocpp_central_system::"
                "test_stop_of_unknown_or_minus_one_transaction_is_answered_and_reconciled_once",
            IT + "test_ocpp_central_system::test_repeated_stop_is_relayed_once_and_negative_energy_is_never_billed"],
        "SampledValue defaults, kWh, and both Celsius spellings": [
            IT + "test_ocpp_central_system::"
                "test_meter_values_in_kwh_are_relayed_in_wh_and_other_units_do_not_break_them",
            UT + "test_domain::test_sampled_value_defaults_are_energy_register_in_wh"],
        "meterStop below meterStart never bills negative energy": [
            IT + "test_ocpp_central_system::test_repeated_stop_is_relayed_once_and_negative_energy_is_never_billed",
            UT + "test_domain::test_billable_energy_is_never_negative"],
        "ConcurrentTx is for StartTransaction only: Authorize never answers it (§7.2)": [
            IT + "test_ocpp_rules::test_rule_authorize_never_answers_concurrent_tx",
            IT + "test_authorization::test_authorize_and_start_answer_every_status_of_the_local_list"],
        "idTags are compared case-insensitively (IdToken)": [
            IT + "test_authorization::test_id_tags_are_compared_without_case"],
        "a session the charger forgot is written off for good; its late stop is reconciled once": [
            IT + "test_ocpp_rules::"
                "test_rule_a_session_written_off_never_runs_again_and_its_late_stop_is_reconciled_once",
            IT + "test_ocpp_rules::test_rule_a_reboot_writes_off_the_chargers_sessions_and_their_tx_profiles",
            IT + "test_ocpp_rules::test_rule_a_written_off_session_leaves_the_open_report_after_the_grace",
            IT + "test_authorization::test_a_transaction_whose_connector_went_available_no_longer_blocks_its_id_tag"],
        "a TxProfile ends with its transaction: at its stop or a reboot (§3.13.2)": [
            IT + "test_ocpp_rules::test_rule_tx_profiles_end_with_their_transaction",
            IT + "test_ocpp_rules::test_rule_a_reboot_writes_off_the_chargers_sessions_and_their_tx_profiles"],
        "a StopTransaction without reason means Local (§7.45)": [
            IT + "test_ocpp_rules::test_rule_a_stop_without_reason_means_local"],
    },
    "Status": {
        "connector 0 describes the whole charger": [
            IT + "test_liveness::"
                "test_rule_status_connector_states_are_kept_per_charger_and_connector_zero_is_the_charger",
            IT + "test_liveness::test_rule_status_connector_zero_is_only_available_unavailable_or_faulted"],
        "WebSocket pings and a heartbeat deadline mark chargers offline within a bounded time": [
            IT + "test_liveness::test_rule_status_a_silent_charger_misses_the_heartbeat_deadline_and_is_marked_offline",
            IT + "test_liveness::test_rule_status_a_charger_that_stops_answering_pings_is_closed_and_marked_offline"],
        "a second connection with the same id replaces the first": [
            IT + "test_ocpp_central_system::test_a_second_connection_with_the_same_id_replaces_the_first"],
    },
    "Security profiles": {
        "Profile 1: HTTP Basic with the charger's AuthorizationKey": [
            IT + "test_security_profiles::test_profile_1_needs_basic_auth_with_the_chargers_own_key_else_401",
            UT + "test_security::test_authorization_keys_have_16_to_40_printable_characters"],
        "Profile 2: the same over TLS 1.2+": [
            IT + "test_security_profiles::test_profile_2_needs_tls_1_2_or_newer_and_basic_auth"],
        "Profile 3: TLS with a client certificate of the charger CA whose subject CN is the charger id": [
            IT + "test_security_profiles::"
                "test_profile_3_needs_a_client_certificate_of_the_charger_ca_that_names_the_charger"],
        "a minimum profile (production: 1) refuses chargers anyone could impersonate": [
            IT + "test_security_profiles::test_a_minimum_security_profile_refuses_chargers_anyone_could_impersonate"],
        "a new AuthorizationKey is adopted on Accepted, the old one valid until first used, never shown in clear": [
            IT + "test_ocpp_rules::"
                "test_rule_a_new_authorization_key_is_adopted_on_accepted_and_never_shown_in_clear"],
        "one profile per charger, never downgraded; wrong credentials get 401": [
            IT + "test_security_profiles::"
                "test_a_profile_2_charger_on_a_plain_connection_gets_401_and_profiles_are_never_downgraded",
            IT + "test_security_profiles::test_profile_1_needs_basic_auth_with_the_chargers_own_key_else_401",
            IT + "test_security_profiles::"
                "test_profile_3_needs_a_client_certificate_of_the_charger_ca_that_names_the_charger"],
    },
}


@pytest.mark.parametrize(("section", "rule"), [(s, r) for s, rules in RULES.items() for r in rules])
def test_every_ocpp_notes_rule_names_tests_that_exist(section: str, rule: str) -> None:
    for reference in RULES[section][rule]:
        module, name = reference.split("::")
        assert callable(getattr(importlib.import_module(module), name, None)), f"{section} / {rule}: {reference}"
