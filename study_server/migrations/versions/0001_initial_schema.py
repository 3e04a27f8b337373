"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-27 18:00:45.560243
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('login_failures',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('remote_addr', sa.String(length=64), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('login_failures', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_login_failures_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_login_failures_remote_addr'), ['remote_addr'], unique=False)

    op.create_table('settings',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('studies',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('manifest_json', sa.Text(), nullable=False),
    sa.Column('imported_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('participants',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sa.String(length=16), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('prolific_pid', sa.String(length=64), nullable=True),
    sa.Column('prolific_study_id', sa.String(length=64), nullable=True),
    sa.Column('prolific_session_id', sa.String(length=64), nullable=True),
    sa.Column('is_preview', sa.Boolean(), nullable=False),
    sa.Column('condition', sa.String(length=20), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('stage', sa.String(length=20), nullable=False),
    sa.Column('plan_seed', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('user_agent', sa.String(length=400), nullable=False),
    sa.Column('consented_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('window_width', sa.Integer(), nullable=True),
    sa.Column('window_height', sa.Integer(), nullable=True),
    sa.Column('instructions_shown_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('instruction_ms', sa.Float(), nullable=True),
    sa.Column('practice_round', sa.Integer(), nullable=False),
    sa.Column('practice_flagged', sa.Boolean(), nullable=False),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('return_reason', sa.String(length=40), nullable=True),
    sa.ForeignKeyConstraint(['study_id'], ['studies.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('public_id'),
    sa.UniqueConstraint('study_id', 'prolific_pid')
    )
    with op.batch_alter_table('participants', schema=None) as batch_op:
        batch_op.create_index('ix_participants_assignment', ['study_id', 'is_preview', 'condition', 'status'], unique=False)

    op.create_table('units',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=120), nullable=False),
    sa.Column('network', sa.String(length=100), nullable=False),
    sa.Column('class_index', sa.Integer(), nullable=False),
    sa.Column('label', sa.String(length=300), nullable=False),
    sa.ForeignKeyConstraint(['study_id'], ['studies.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('study_id', 'key')
    )
    op.create_table('query_pairs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('pair_key', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('unit_id', sa.Integer(), nullable=False),
    sa.Column('base_image', sa.String(length=64), nullable=False),
    sa.Column('image_a', sa.String(length=64), nullable=False),
    sa.Column('image_b', sa.String(length=64), nullable=False),
    sa.Column('correct', sa.String(length=1), nullable=False),
    sa.Column('activation_base', sa.Float(), nullable=False),
    sa.Column('activation_max', sa.Float(), nullable=False),
    sa.Column('activation_min', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['study_id'], ['studies.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['unit_id'], ['units.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('study_id', 'pair_key')
    )
    op.create_table('trials',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('participant_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('practice_round', sa.Integer(), nullable=True),
    sa.Column('query_pair_id', sa.Integer(), nullable=False),
    sa.Column('correct_side', sa.String(length=5), nullable=False),
    sa.Column('answer_id', sa.String(length=64), nullable=True),
    sa.Column('chosen_side', sa.String(length=5), nullable=True),
    sa.Column('confidence', sa.Integer(), nullable=True),
    sa.Column('rt_ms', sa.Float(), nullable=True),
    sa.Column('shown_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('window_width', sa.Integer(), nullable=True),
    sa.Column('window_height', sa.Integer(), nullable=True),
    sa.Column('device_pixel_ratio', sa.Float(), nullable=True),
    sa.Column('blur_count', sa.Integer(), nullable=True),
    sa.Column('fullscreen_exit_count', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['query_pair_id'], ['query_pairs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('answer_id'),
    sa.UniqueConstraint('participant_id', 'position')
    )


def downgrade() -> None:
    op.drop_table('trials')
    op.drop_table('query_pairs')
    op.drop_table('units')
    with op.batch_alter_table('participants', schema=None) as batch_op:
        batch_op.drop_index('ix_participants_assignment')

    op.drop_table('participants')
    op.drop_table('studies')
    op.drop_table('settings')
    with op.batch_alter_table('login_failures', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_login_failures_remote_addr'))
        batch_op.drop_index(batch_op.f('ix_login_failures_at'))

    op.drop_table('login_failures')
