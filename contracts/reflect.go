package contracts

import "reflect"

type reflectType = reflect.Type

func newOf(t reflect.Type) any { return reflect.New(t).Interface() }

func elemOf(p any) any { return reflect.ValueOf(p).Elem().Interface() }
