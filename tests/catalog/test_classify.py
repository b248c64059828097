"""Risk classes of harvested tools: the server's annotations first, then the reviewed rules,
and every guess marked as one."""

from __future__ import annotations

import pytest

from dsl.classify import classify, name_words


def test_annotations_decide_and_are_not_marked_inferred():
    c = classify("create_everything", "", {"readOnlyHint": True})
    assert (c.risk, c.inferred, c.why) == ("read", False, "readOnlyHint")
    c = classify("get_thing", "", {"destructiveHint": True})
    assert (c.risk, c.inferred) == ("destructive", False)  # the server's word beats the name
    c = classify("remember", "", {"readOnlyHint": False, "destructiveHint": False})
    assert (c.risk, c.inferred) == ("write", False)


def test_read_only_false_alone_is_destructive_as_the_spec_defaults_it():
    c = classify("store", "", {"readOnlyHint": False})
    assert (c.risk, c.inferred) == ("destructive", False)


def test_hints_that_say_nothing_about_class_leave_it_to_the_rules():
    c = classify("list_items", "", {"openWorldHint": True})
    assert (c.risk, c.inferred) == ("read", True)


@pytest.mark.parametrize(
    "name, risk",
    [
        ("delete_repo", "destructive"),
        ("purgeCache", "destructive"),
        ("cancel-order", "destructive"),
        ("execute_sql", "execute"),
        ("run_command", "execute"),
        ("browser_evaluate", "execute"),
        ("query", "execute"),
        ("create_issue", "write"),
        ("sendMessage", "write"),
        ("post_comment", "write"),
        ("get_issue", "read"),
        ("list-projects", "read"),
        ("search_code", "read"),
        ("frobnicate", "write"),  # no rule: write, never read
    ],
)
def test_name_rules(name: str, risk: str):
    c = classify(name)
    assert (c.risk, c.inferred) == (risk, True), c.why


def test_the_first_verb_of_the_name_decides():
    assert classify("browser_click").risk == "write"
    assert classify("get_run_logs").risk == "read"  # not execute: `get` comes first


def test_never_read_by_guess_when_the_description_mentions_writing_or_deleting():
    c = classify("get_record", "Gets a record.")
    assert c.risk == "read"
    c = classify("get_or_create", "Gets a record.")  # the name's second action decides
    assert (c.risk, c.inferred) == ("write", True) and "or create" in c.why
    c = classify("fetch_page", "Fetches a page and writes it to disk.")
    assert (c.risk, c.inferred) == ("write", True) and "writes" in c.why
    c = classify("list_and_prune", "Lists old branches and deletes the merged ones.")
    assert c.risk == "destructive" and "deletes" in c.why
    # the server's own readOnlyHint is a claim: a name with a second, deleting action overrules it
    c = classify("list_and_prune", "… deletes …", {"readOnlyHint": True})
    assert (c.risk, c.inferred) == ("destructive", True) and "readOnlyHint said read" in c.why
    # ... but a description that only mentions deleting, not as what the tool does, does not
    assert classify("list_changes", "Lists items added, deleted, or updated.", {"readOnlyHint": True}).risk == "read"


def test_a_name_without_a_verb_falls_back_to_the_descriptions_first_words():
    c = classify("weather", "Retrieves the forecast for a city.")
    assert (c.risk, c.why) == ("read", "description: retrieve")


def test_names_that_overwrite_or_delete_are_destructive_whatever_the_annotation_says():
    for name in ("write_file", "edit_file", "move_file", "push_files", "merge_pull_request", "delete-x"):
        c = classify(name, "", {"destructiveHint": False, "readOnlyHint": False})
        assert (c.risk, c.inferred) == ("destructive", True), name
        assert "said write" in c.why


def test_an_annotated_write_tool_that_runs_code_is_execute_and_marked_a_guess():
    c = classify("run_query", "", {"destructiveHint": False})
    assert (c.risk, c.inferred) == ("execute", True)


def test_name_words_split_every_convention():
    assert name_words("getHTTPResponse_v2-body.raw") == ["get", "http", "response", "v", "body", "raw"]
