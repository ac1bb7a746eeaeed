from replicator.model import SourceTable, TableId, topic_for


def test_topic_names_follow_debezium_sanitising() -> None:
    assert topic_for("p", TableId("public", "items")) == "p.public.items"
    assert topic_for("p", TableId("pub lic", 'we"ird;tä')) == "p.pub_lic.we_ird_t_"


def test_publishable_rules() -> None:
    t = TableId("s", "t")
    assert SourceTable(t, True, "d").publishable
    assert not SourceTable(t, False, "d").publishable
    assert SourceTable(t, False, "f").publishable
    assert not SourceTable(t, True, "n").publishable
    assert SourceTable(t, False, "i", has_identity_index=True).publishable
    assert SourceTable(t, False, None).publishable  # MySQL: full row image
