from django.db import migrations, models


class AddIndexConcurrentlyOnPostgres(migrations.AddIndex):
    """`CREATE INDEX CONCURRENTLY` on PostgreSQL: the events table is the big one, and a plain
    CREATE INDEX would hold back ingestion while it builds. SQLite (`make run`) builds it plainly.
    Concurrent builds cannot run in a transaction, hence `atomic = False` below."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        model = to_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            schema_editor.add_index(model, self.index, concurrently=True)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        model = from_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            schema_editor.remove_index(model, self.index, concurrently=True)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('costs', '0004_gateway_calls'),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name='costevent',
            index=models.Index(fields=['project', 'received_at'], name='costevent_project_received'),
        ),
    ]
