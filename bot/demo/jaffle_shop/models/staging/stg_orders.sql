-- One row per order. The source calls the customer `user_id`; everything
-- downstream says `customer_id`, so the rename happens once, here.
with source as (

    select * from {{ ref('raw_orders') }}

),

renamed as (

    select
        id as order_id,
        user_id as customer_id,
        cast(order_date as date) as order_date,
        status
    from source

)

select * from renamed
