-- One row per payment. The source stores money as integer cents; marts and
-- the semantic layer work in dollars, so convert exactly once at the edge.
with source as (

    select * from {{ ref('raw_payments') }}

),

renamed as (

    select
        id as payment_id,
        order_id,
        payment_method,
        -- divide by 100.0 (not 100) to avoid integer division
        cast(amount / 100.0 as decimal(18, 2)) as amount
    from source

)

select * from renamed
